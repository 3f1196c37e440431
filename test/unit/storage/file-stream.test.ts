/**
 * The file download stream: the bytes a client receives are the file's, whole or a range, fast or
 * slow, while the stream reuses its read buffers once told it writes into a response; and a
 * reader it was not told about gets buffers of its own.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DOWNLOAD_CHUNK, FileStream, openFileStream, recycleAfterWrite } from '../../../infra/storage/file-stream.js';

const SIZE = 24 * DOWNLOAD_CHUNK + 12_345;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('file download stream', () => {
  let dir: string;
  let path: string;
  let content: Buffer;
  let server: Server;
  let port: number;
  const served: FileStream[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pir-file-stream-'));
    path = join(dir, 'image');
    content = randomBytes(SIZE);
    await writeFile(path, content);
    // GET /?start=&end= answers that range (inclusive) of the file, recycling as the API does.
    server = createServer(async (req, res) => {
      const q = new URL(req.url!, 'http://x').searchParams;
      const range = q.has('start') ? { start: Number(q.get('start')), end: Number(q.get('end')) } : undefined;
      const stream = await openFileStream(path, range);
      served.push(stream);
      res.writeHead(200, { 'content-length': String(range ? range.end - range.start + 1 : SIZE) });
      recycleAfterWrite(stream, res);
      stream.pipe(res);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    server.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** GETs the path; a slow client pauses for `pauseMs` after every `pauseEvery` chunks. */
  function get(query: string, pauseEvery = 0, pauseMs = 0): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      request({ port, host: '127.0.0.1', path: `/${query}` }, (res) => {
        const chunks: Buffer[] = [];
        let n = 0;
        res.on('data', (c: Buffer) => {
          chunks.push(c);
          if (pauseEvery && ++n % pauseEvery === 0) {
            res.pause();
            setTimeout(() => res.resume(), pauseMs);
          }
        });
        res.on('end', () => resolve(Buffer.concat(chunks)));
        res.on('error', reject);
      }).on('error', reject).end();
    });
  }

  it('sends the whole file intact to a fast client, reusing its buffers', async () => {
    const got = await get('');
    assert.equal(got.length, SIZE);
    assert.equal(sha(got), sha(content));
    const stream = served.at(-1)!;
    assert.equal(stream.bytesRead, SIZE);
    assert.ok(stream.reusedReads > 0, 'the stream reused its read buffers');
  });

  it('sends the whole file intact to a client that keeps pausing (backpressure)', async () => {
    const got = await get('', 7, 15);
    assert.equal(sha(got), sha(content));
    assert.ok(served.at(-1)!.reusedReads > 0);
  });

  it('sends ranges intact, fast and slow', async () => {
    const ranges = [[0, 0], [0, DOWNLOAD_CHUNK - 1], [DOWNLOAD_CHUNK - 1, DOWNLOAD_CHUNK], [5, 3 * DOWNLOAD_CHUNK + 17], [SIZE - 1, SIZE - 1], [1_000_000, SIZE - 1]];
    for (let i = 0; i < 6; i++) {
      const start = Math.floor(Math.random() * SIZE);
      ranges.push([start, Math.min(SIZE - 1, start + Math.floor(Math.random() * 8 * DOWNLOAD_CHUNK))]);
    }
    for (const [start, end] of ranges) {
      for (const slow of [false, true]) {
        const got = await get(`?start=${start}&end=${end}`, slow ? 3 : 0, slow ? 5 : 0);
        assert.equal(sha(got), sha(content.subarray(start!, end! + 1)), `bytes ${start}-${end}${slow ? ', slow' : ''}`);
      }
    }
  });

  it('gives a reader it was not told about a buffer of its own for every chunk', async () => {
    const stream = await openFileStream(path);
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    assert.equal(new Set(chunks.map((c) => c.buffer)).size, chunks.length);
    assert.equal(sha(Buffer.concat(chunks)), sha(content));
    assert.equal(stream.reusedReads, 0);
  });

  it('ends at the end of the file, and rejects a missing file', async () => {
    const stream = await openFileStream(path, { start: SIZE - 10, end: SIZE + 1000 });
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    assert.deepEqual(Buffer.concat(chunks), content.subarray(SIZE - 10));
    await assert.rejects(openFileStream(join(dir, 'missing')), { code: 'ENOENT' });
  });

  it('closes its descriptor when destroyed mid-read', async () => {
    const stream = await openFileStream(path);
    stream.resume();
    stream.destroy();
    await once(stream, 'close');
    assert.ok(stream.destroyed);
  });
});
