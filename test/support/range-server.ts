/**
 * A small HTTP server of in-memory objects for registered-location tests: single Range requests,
 * ETag / Last-Modified / If-Match as a static file server answers them, redirects, a server that
 * ignores Range, and a count of the bytes it sent (to show PIR reads an object once, never more).
 */
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ServedObject {
  data: Buffer;
  /** Answer Range requests (default true). */
  ranges?: boolean;
  /** Claimed size for Content-Range, when it should differ from data (a huge object never sent). */
  claimedSize?: number;
  lastModified?: string;
  /** Send a whole-object answer (no Range) in 64 KiB pieces at this rate: a slow read to interrupt. */
  bytesPerSecond?: number;
}

export interface RangeServer {
  base: string;
  objects: Map<string, ServedObject>;
  redirects: Map<string, string>;
  /** Body bytes sent per path. */
  sent: Map<string, number>;
  /** The Range header of every request, per path (null: none). */
  ranges: Map<string, (string | null)[]>;
  close(): Promise<void>;
}

export const etagOf = (data: Buffer) => `"${createHash('md5').update(data).digest('hex')}"`;

export async function startRangeServer(): Promise<RangeServer> {
  const objects = new Map<string, ServedObject>();
  const redirects = new Map<string, string>();
  const sent = new Map<string, number>();
  const ranges = new Map<string, (string | null)[]>();
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const redirect = redirects.get(path);
    if (redirect) return res.writeHead(302, { location: redirect }).end();
    const object = objects.get(path);
    if (!object) return res.writeHead(404).end('not here');
    ranges.set(path, [...(ranges.get(path) ?? []), req.headers.range ?? null]);
    const size = object.claimedSize ?? object.data.length;
    const etag = etagOf(object.data);
    const validators = { etag, 'last-modified': object.lastModified ?? 'Tue, 01 Dec 2026 10:00:00 GMT', 'accept-ranges': object.ranges === false ? 'none' : 'bytes' };
    const ifMatch = req.headers['if-match'];
    if (ifMatch && ifMatch !== etag) return res.writeHead(412, validators).end();
    const count = (n: number) => sent.set(path, (sent.get(path) ?? 0) + n);
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (m && object.ranges !== false) {
      const start = Number(m[1]);
      const end = Math.min(Number(m[2]), size - 1);
      if (start >= size) return res.writeHead(416, { ...validators, 'content-range': `bytes */${size}` }).end();
      const body = object.data.subarray(start, end + 1);
      res.writeHead(206, { ...validators, 'content-range': `bytes ${start}-${end}/${size}`, 'content-length': String(end - start + 1) });
      count(body.length);
      return res.end(body);
    }
    res.writeHead(200, { ...validators, 'content-length': String(size) });
    count(object.data.length);
    if (!object.bytesPerSecond) return res.end(object.data);
    const piece = 64 * 1024;
    let at = 0;
    const timer = setInterval(() => {
      if (res.destroyed) return clearInterval(timer);
      res.write(object.data.subarray(at, at + piece));
      at += piece;
      if (at >= object.data.length) {
        clearInterval(timer);
        res.end();
      }
    }, Math.max(1, Math.round((1000 * piece) / object.bytesPerSecond)));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    base, objects, redirects, sent, ranges,
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close').catch(() => {});
    },
  };
}
