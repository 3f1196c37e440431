/** LocationReader over http(s): ranges, the fingerprint checks on every read, and egress rules on every request. */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { parseAllowList } from '../../../infra/egress/address-policy.js';
import { DEFAULT_EGRESS, EgressClient } from '../../../infra/egress/egress-client.js';
import { LocationChangedError, LocationReader, LocationUnreadableError } from '../../../infra/storage/location-reader.js';
import { LocationAwareBlobStore } from '../../../infra/storage/location-blob-store.js';
import { externalKey } from '../../../core/external-location.js';
import { startRangeServer, type RangeServer } from '../../support/range-server.js';
import type { BlobStore } from '../../../core/ports.js';

const data = Buffer.from(Array.from({ length: 3 * 2 ** 20 }, (_, i) => (i * 7) & 0xff));

async function drain(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('LocationReader (http)', () => {
  let server: RangeServer;
  let reader: LocationReader;
  before(async () => {
    server = await startRangeServer();
    reader = new LocationReader(new EgressClient({ ...DEFAULT_EGRESS, allowList: parseAllowList(new URL(server.base).host) }), null);
  });
  after(async () => { reader.close(); await server.close(); });

  it('refuses an s3:// location when no S3 endpoint is configured, without loading an S3 client', async () => {
    const ref = { url: 's3://bucket/disk.qcow2', fingerprint: { size: 10, etag: null, last_modified: null } };
    for (const attempt of [() => reader.probe(ref.url), () => reader.read(ref)]) {
      await assert.rejects(attempt, (e: unknown) => e instanceof LocationUnreadableError && e.code === 'location_refused' && /PIR_S3_ENDPOINT/.test(e.message));
    }
  });

  it('probes size and validators, reads whole and ranged, and fails on any change', async () => {
    server.objects.set('/a', { data });
    const fingerprint = await reader.probe(`${server.base}/a`);
    assert.equal(fingerprint.size, data.length);
    assert.ok(fingerprint.etag && fingerprint.last_modified);
    const ref = { url: `${server.base}/a`, fingerprint };
    assert.deepEqual(await drain(await reader.read(ref)), data);
    assert.deepEqual(await reader.readRange(ref, 100, 50), data.subarray(100, 150));
    // Same size, other bytes: the ETag differs (If-Match answered 412).
    const other = Buffer.from(data);
    other[0] ^= 1;
    server.objects.set('/a', { data: other });
    await assert.rejects(reader.read(ref), LocationChangedError);
    await assert.rejects(reader.verify(ref), LocationChangedError);
    // Shorter, with no ETag known: the size tells.
    server.objects.set('/a', { data: data.subarray(0, 1000) });
    await assert.rejects(reader.read({ ...ref, fingerprint: { ...fingerprint, etag: null } }, { start: 0, end: 9 }), LocationChangedError);
  });

  it('every request passes the egress checks: a redirect to a private address later is refused, naming no host', async () => {
    server.objects.set('/b', { data });
    const ref = { url: `${server.base}/b`, fingerprint: await reader.probe(`${server.base}/b`) };
    server.redirects.set('/b', 'http://10.9.8.7/b');
    const error = await reader.read(ref).then(() => null, (e: unknown) => e);
    assert.ok(error instanceof LocationUnreadableError);
    assert.equal(error.code, 'address_refused');
    assert.ok(!error.message.includes('10.9.8.7') && !error.message.includes('127.0.0.1'), error.message);
    server.redirects.delete('/b');
  });

  it('a body longer or shorter than its announced range fails the stream', async () => {
    // A server that answers 206 with a correct Content-Range but sends more bytes (chunked).
    const liar = createServer((req, res) => {
      const etag = '"x"';
      if (req.headers.range === 'bytes=0-0') return res.writeHead(206, { etag, 'content-range': `bytes 0-0/${data.length}` }).end(data.subarray(0, 1));
      res.writeHead(206, { etag, 'content-range': `bytes 0-9/${data.length}` });
      res.end(data.subarray(0, 20));
    });
    liar.listen(0, '127.0.0.1');
    await once(liar, 'listening');
    const base = `http://127.0.0.1:${(liar.address() as AddressInfo).port}`;
    const liarReader = new LocationReader(new EgressClient({ ...DEFAULT_EGRESS, allowList: parseAllowList(new URL(base).host) }), null);
    try {
      const ref = { url: `${base}/c`, fingerprint: await liarReader.probe(`${base}/c`) };
      await assert.rejects(drain(await liarReader.read(ref, { start: 0, end: 9 })), LocationChangedError);
    } finally {
      liarReader.close();
      liar.closeAllConnections();
      liar.close();
    }
  });

  it('the blob port reads external keys from the location and never writes or deletes them', async () => {
    server.objects.set('/d', { data });
    const ref = { url: `${server.base}/d`, fingerprint: await reader.probe(`${server.base}/d`) };
    const key = externalKey(ref);
    const calls: string[] = [];
    const inner = new Proxy({ kind: 'filesystem' } as BlobStore, {
      get: (target, prop) => (prop === 'kind' ? target.kind : (...args: unknown[]) => { calls.push(`${String(prop)}:${String(args[0])}`); return Promise.resolve(null); }),
    });
    const blobs = new LocationAwareBlobStore(inner, reader);
    assert.equal((await blobs.stat(key))?.size, data.length);
    const r = await blobs.openReader(key);
    assert.deepEqual(await r.read(2 ** 20 + 5, 10), data.subarray(2 ** 20 + 5, 2 ** 20 + 15));
    await r.close();
    assert.equal(await blobs.promote(key, 'img'), key);
    await blobs.delete(key);
    await assert.rejects(blobs.write(key, (async function* () {})(), { maxBytes: 1 }));
    await assert.rejects(blobs.localFile(key));
    await blobs.delete('images/img');
    assert.deepEqual(calls, ['delete:images/img'], 'only PIR\'s own key reached the inner store');
    assert.equal(server.objects.get('/d')?.data.length, data.length);
  });
});
