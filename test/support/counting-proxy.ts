/**
 * An HTTP proxy in front of an S3 endpoint that counts what passes (the Host header is kept, so
 * SigV4 signatures still hold): body bytes of GET responses (reads of stored bytes), the
 * requests that would copy an object server-side (CopyObject / UploadPartCopy carry
 * `x-amz-copy-source`), and each request's Host and path (how the client addressed the bucket).
 */
import { createServer, request, type Server } from 'node:http';
import { freePort } from './pir-process.js';

export interface CountingProxy {
  url: string;
  /** GET response body bytes since the last reset. */
  getBytes(): number;
  /** Server-side copy requests since the last reset. */
  copies(): number;
  /** GET answers whose client (PIR) closed the connection before the body's end, since the last reset. */
  cutGets(): number;
  /** Every request's method, Host header and path, since the last reset. */
  requests(): { method: string; host: string; path: string }[];
  reset(): void;
  close(): Promise<void>;
}

export async function countingProxy(target: URL): Promise<CountingProxy> {
  let bytes = 0;
  let copies = 0;
  let cutGets = 0;
  let seen: { method: string; host: string; path: string }[] = [];
  const server: Server = createServer((req, res) => {
    if (req.headers['x-amz-copy-source']) copies++;
    seen.push({ method: req.method ?? '', host: req.headers.host ?? '', path: req.url ?? '' });
    const upstream = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      if (req.method === 'GET') {
        up.on('data', (c: Buffer) => { bytes += c.length; });
        // A client that hung up ends the upstream GET too: with the 'data' counter attached,
        // `up` would otherwise keep flowing after pipe() lets go and count the whole object.
        res.once('close', () => { if (!res.writableFinished) { cutGets++; up.destroy(); } });
      }
      up.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${port}`,
    getBytes: () => bytes,
    copies: () => copies,
    cutGets: () => cutGets,
    requests: () => [...seen],
    reset: () => { bytes = 0; copies = 0; cutGets = 0; seen = []; },
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
