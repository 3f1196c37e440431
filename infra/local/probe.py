#!/usr/bin/env python3
"""Tiny dependency-free health probes for the local test services.

  probe.py port PORT            TCP connect to 127.0.0.1:PORT
  probe.py kafka PORT           Kafka Metadata v4 request; ok if >= 1 broker is listed
  probe.py mongo PORT           MongoDB OP_MSG {ping: 1, $db: "admin"}; ok if ok == 1
  probe.py s3 PORT              S3 gateway answers an anonymous GET / with an S3 XML reply
  probe.py bucket PORT NAME     SeaweedFS filer on PORT lists /buckets/NAME/ (the bucket exists)
  probe.py vacuum PORT T WAIT   SeaweedFS master on PORT: once its volume server has joined (within
                                WAIT s), compact every volume whose deleted bytes are >= T of it
  probe.py kafka-cluster-id     prints a fresh random Kafka cluster id (base64url uuid)

Exit code 0 = healthy, 1 = not healthy (reason on stderr).
"""
import base64
import socket
import struct
import sys
import uuid

HOST = "127.0.0.1"
TIMEOUT = 3.0


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def probe_port(port):
    with socket.create_connection((HOST, port), timeout=TIMEOUT):
        pass
    return "port open"


def kafka_str(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def probe_kafka(port):
    # Request header v1: api_key, api_version, correlation_id, client_id.
    # Metadata v4 body: topics = null (-1, all topics), allow_auto_topic_creation = false.
    corr = 4242
    body = struct.pack(">hhi", 3, 4, corr) + kafka_str("pir-probe") + struct.pack(">i?", -1, False)
    with socket.create_connection((HOST, port), timeout=TIMEOUT) as s:
        s.settimeout(TIMEOUT)
        s.sendall(struct.pack(">i", len(body)) + body)
        (size,) = struct.unpack(">i", recv_exact(s, 4))
        resp = recv_exact(s, size)
    off = 0
    (rcorr,) = struct.unpack_from(">i", resp, off)
    off += 4
    if rcorr != corr:
        raise ValueError("bad correlation id %d" % rcorr)
    off += 4  # throttle_time_ms
    (nbrokers,) = struct.unpack_from(">i", resp, off)
    off += 4
    brokers = []
    for _ in range(max(nbrokers, 0)):
        (node_id,) = struct.unpack_from(">i", resp, off)
        off += 4
        (hlen,) = struct.unpack_from(">h", resp, off)
        off += 2
        host = resp[off:off + hlen].decode()
        off += hlen
        (bport,) = struct.unpack_from(">i", resp, off)
        off += 4
        (rlen,) = struct.unpack_from(">h", resp, off)
        off += 2 + max(rlen, 0)
        brokers.append("%d@%s:%d" % (node_id, host, bport))
    (clen,) = struct.unpack_from(">h", resp, off)
    off += 2
    cluster = resp[off:off + clen].decode() if clen >= 0 else None
    off += max(clen, 0)
    (controller,) = struct.unpack_from(">i", resp, off)
    if not brokers:
        raise ValueError("metadata lists no brokers yet")
    if controller < 0:
        raise ValueError("no active controller yet")
    return "brokers=%s cluster_id=%s controller=%d" % (",".join(brokers), cluster, controller)


def bson_doc(items):
    out = b""
    for key, val in items:
        k = key.encode() + b"\x00"
        if isinstance(val, int):
            out += b"\x10" + k + struct.pack("<i", val)
        elif isinstance(val, str):
            v = val.encode() + b"\x00"
            out += b"\x02" + k + struct.pack("<i", len(v)) + v
        else:
            raise TypeError(type(val))
    return struct.pack("<i", len(out) + 5) + out + b"\x00"


def bson_ok(doc):
    """Returns the value of the top-level 'ok' field (double/int32/int64/bool)."""
    off = 4
    end = struct.unpack_from("<i", doc, 0)[0] - 1
    while off < end:
        t = doc[off]
        off += 1
        nul = doc.index(b"\x00", off)
        key = doc[off:nul].decode()
        off = nul + 1
        if t == 0x01:
            val = struct.unpack_from("<d", doc, off)[0]; off += 8
        elif t == 0x10:
            val = struct.unpack_from("<i", doc, off)[0]; off += 4
        elif t == 0x12 or t == 0x09 or t == 0x11:
            val = struct.unpack_from("<q", doc, off)[0]; off += 8
        elif t == 0x08:
            val = doc[off]; off += 1
        elif t == 0x02 or t == 0x0D or t == 0x0E:
            off += 4 + struct.unpack_from("<i", doc, off)[0]; val = None
        elif t == 0x03 or t == 0x04:
            off += struct.unpack_from("<i", doc, off)[0]; val = None
        elif t == 0x05:
            off += 5 + struct.unpack_from("<i", doc, off)[0]; val = None
        elif t == 0x07:
            off += 12; val = None
        elif t == 0x0A or t == 0xFF or t == 0x7F:
            val = None
        elif t == 0x13:
            off += 16; val = None
        else:
            raise ValueError("unsupported bson type 0x%02x" % t)
        if key == "ok":
            return val
    return None


def probe_mongo(port):
    doc = bson_doc([("ping", 1), ("$db", "admin")])
    payload = struct.pack("<I", 0) + b"\x00" + doc  # flagBits, section kind 0
    req_id = 4243
    msg = struct.pack("<iiii", 16 + len(payload), req_id, 0, 2013) + payload
    with socket.create_connection((HOST, port), timeout=TIMEOUT) as s:
        s.settimeout(TIMEOUT)
        s.sendall(msg)
        length, _, resp_to, opcode = struct.unpack("<iiii", recv_exact(s, 16))
        rest = recv_exact(s, length - 16)
    if opcode != 2013 or resp_to != req_id:
        raise ValueError("unexpected reply opcode=%d responseTo=%d" % (opcode, resp_to))
    if rest[4] != 0:
        raise ValueError("unexpected section kind %d" % rest[4])
    ok = bson_ok(rest[5:])
    if ok != 1:
        raise ValueError("ping returned ok=%r" % ok)
    return "ping ok"


def http_get(port, path, accept=None):
    import http.client
    conn = http.client.HTTPConnection(HOST, port, timeout=TIMEOUT)
    try:
        conn.request("GET", path, headers={"Accept": accept} if accept else {})
        resp = conn.getresponse()
        return resp.status, resp.read(4096)
    finally:
        conn.close()


def probe_s3(port):
    status, body = http_get(port, "/")
    # Anonymous: 403 AccessDenied (or 200 with a bucket list when anonymous access is open).
    if status not in (200, 403) or b"<?xml" not in body:
        raise ValueError("GET / answered %d, not an S3 reply" % status)
    return "S3 answers (%d)" % status


def probe_bucket(port, name):
    status, _ = http_get(port, "/buckets/%s/" % name, "application/json")
    if status != 200:
        raise ValueError("filer has no /buckets/%s/ (%d)" % (name, status))
    return "bucket %s exists" % name


def seaweedfs_vacuum(port, threshold, wait):
    """The master's /vol/vacuum, once the master leads and knows the volume server (its raft
    election takes ~15 s after a start); it answers when every volume was checked or compacted."""
    import http.client
    import json
    import time
    deadline = time.time() + wait
    while True:
        try:
            status, body = http_get(port, "/dir/status")
            topo = json.loads(body).get("Topology", {}) if status == 200 else {}
            if any(dn for dc in topo.get("DataCenters") or [] for rack in dc.get("Racks") or [] for dn in rack.get("DataNodes") or []):
                break
        except (OSError, ValueError):
            pass
        if time.time() > deadline:
            raise TimeoutError("no volume server joined the master within %d s" % wait)
        time.sleep(1)
    conn = http.client.HTTPConnection(HOST, port, timeout=900)
    try:
        conn.request("GET", "/vol/vacuum?garbageThreshold=%s" % threshold)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise ValueError("/vol/vacuum answered %d" % resp.status)
    finally:
        conn.close()
    return "vacuumed volumes with >= %s garbage" % threshold


def main(argv):
    if len(argv) == 4 and argv[0] == "vacuum":
        try:
            print(seaweedfs_vacuum(int(argv[1]), float(argv[2]), int(argv[3])))
            return 0
        except Exception as e:  # noqa: BLE001
            print("vacuum on %s:%s failed: %s" % (HOST, argv[1], e), file=sys.stderr)
            return 1
    if len(argv) == 3 and argv[0] == "bucket":
        try:
            print(probe_bucket(int(argv[1]), argv[2]))
            return 0
        except Exception as e:  # noqa: BLE001
            print("bucket probe on %s:%s failed: %s" % (HOST, argv[1], e), file=sys.stderr)
            return 1
    if len(argv) >= 1 and argv[0] == "kafka-cluster-id":
        # An id starting with "-" would be read as an option by kafka-storage's argument parser
        # (Kafka's own Uuid.randomUuid() skips those for the same reason).
        while True:
            cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            if not cid.startswith("-"):
                print(cid)
                return 0
    if len(argv) != 2 or argv[0] not in ("port", "kafka", "mongo", "s3"):
        print(__doc__, file=sys.stderr)
        return 2
    fn = {"port": probe_port, "kafka": probe_kafka, "mongo": probe_mongo, "s3": probe_s3}[argv[0]]
    try:
        print(fn(int(argv[1])))
        return 0
    except Exception as e:  # noqa: BLE001 - any failure means "not healthy"
        print("%s probe on %s:%s failed: %s" % (argv[0], HOST, argv[1], e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
