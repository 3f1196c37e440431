/**
 * The small-image floor (bench/small-images): a plain Node HTTP server doing only the work no
 * image service can skip for an upload, in a process of its own as `pir serve` is. POST → an id;
 * PUT → the body streamed into a new file while md5 and sha512 are computed on this thread (as
 * the bytes arrive: the cheapest place for 1 MiB), then fdatasync; 204 once durable. No catalog,
 * no status, no inspection, no auth: what is left of PIR's time per image beyond this is what its
 * bookkeeping costs. The files are kept (the caller removes DIR), as an image service keeps its
 * images: freed pages would make the next file's page cache cheaper than a real store's.
 *
 * Run as a child: `node ingest-floor-server.js DIR`; it sends its port to the parent on IPC.
 */
import { createHash, randomUUID } from 'node:crypto';
import { open } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { join } from 'node:path';

const dir = process.argv[2];
if (!dir || !process.send) throw new Error('usage: fork(ingest-floor-server.js, [DIR]) with an IPC channel');

async function store(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = join(dir!, randomUUID());
  const file = await open(path, 'wx', 0o600);
  try {
    const md5 = createHash('md5');
    const sha512 = createHash('sha512');
    let position = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      md5.update(chunk);
      sha512.update(chunk);
      await file.write(chunk, 0, chunk.length, position);
      position += chunk.length;
    }
    await file.datasync();
    md5.digest('hex');
    sha512.digest('hex');
  } finally {
    await file.close();
  }
  res.writeHead(204).end();
}

const server = createServer((req, res) => {
  if (req.method === 'POST') {
    req.resume();
    req.on('end', () => res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ id: randomUUID() })));
    return;
  }
  store(req, res).catch((error: Error) => res.writeHead(500).end(error.message));
});
server.listen(0, '127.0.0.1', () => process.send!((server.address() as { port: number }).port));
process.on('disconnect', () => process.exit(0));
