/**
 * The tus client (client/resumable.ts) against a small tus server: progress as the bytes leave
 * (one PATCH is the whole file by default), the offset reported after a cut being the HEAD's (or
 * none when the HEAD failed), termination, and a stop that cuts the PATCH in flight.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { PirApiError, Transport } from '../../../client/index.js';
import { resumableUpload, terminateUpload } from '../../../client/resumable.js';

const MiB = 2 ** 20;

describe('client tus upload', () => {
  let dir: string;
  let file: string;
  const data = randomBytes(6 * MiB + 5);
  let server: http.Server;
  let transport: Transport;
  /** The server's state and script. */
  let staged: Buffer[];
  let progress: number[];
  let seenBeforeAnswer: number;
  let cutAfter: number | null;
  /** Answer 503 once this many bytes are in, and read no more of the body (as a store failing mid-PATCH). */
  let refuseAfter: number | null;
  /** Creations answered 503 before one is made. */
  let unavailableCreates: number;
  let failingHeads: number;
  let lockedDeletes: number;
  let deletes: number;
  let aborted: boolean;
  let slow: boolean;
  let closedAt: number;
  const offset = () => Buffer.concat(staged).length;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pir-tus-'));
    file = join(dir, 'disk.raw');
    await writeFile(file, data);
    server = http.createServer((req, res) => {
      const answer = (status: number, headers: Record<string, string> = {}) => res.writeHead(status, { 'tus-resumable': '1.0.0', ...headers }).end();
      if (req.method === 'POST') return unavailableCreates-- > 0 ? answer(503, { 'retry-after': '1' }) : answer(201, { location: '/v2/images/i/uploads/u' });
      if (req.method === 'HEAD') return failingHeads-- > 0 ? answer(503) : answer(200, { 'upload-offset': String(offset()) });
      if (req.method === 'DELETE') {
        deletes++;
        return lockedDeletes-- > 0 ? answer(423) : answer(204);
      }
      if (Number(req.headers['upload-offset']) !== offset()) {
        req.resume();
        return answer(409);
      }
      let received = 0;
      if (slow) {
        // Reads at about 1 MiB/s, as over a slow link: what the client's socket buffered arrives late.
        req.on('data', (chunk: Buffer) => {
          staged.push(chunk);
          req.pause();
          setTimeout(() => req.resume(), chunk.length / 1024);
        });
        req.on('close', () => { closedAt = Date.now(); });
        return;
      }
      req.on('data', (chunk: Buffer) => {
        if (refuseAfter !== null && received + chunk.length >= refuseAfter) {
          staged.push(chunk.subarray(0, refuseAfter - received));
          refuseAfter = null;
          req.pause();
          res.writeHead(503, { 'tus-resumable': '1.0.0', 'content-type': 'application/json' }).end('{"error":{"error_code":"dependency_unavailable","message":"the store did not answer"}}');
          return;
        }
        if (cutAfter !== null && received + chunk.length >= cutAfter) {
          staged.push(chunk.subarray(0, cutAfter - received));
          cutAfter = null;
          req.socket.destroy();
          return;
        }
        received += chunk.length;
        staged.push(chunk);
      });
      req.on('aborted', () => { aborted = true; });
      req.on('end', () => {
        seenBeforeAnswer = progress.length ? Math.max(...progress) : 0;
        answer(204, { 'upload-offset': String(offset()) });
      });
    });
    server.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    transport = new Transport(`http://127.0.0.1:${(server.address() as { port: number }).port}`, 't');
  });
  beforeEach(() => {
    staged = [];
    progress = [];
    seenBeforeAnswer = 0;
    cutAfter = null;
    refuseAfter = null;
    unavailableCreates = 0;
    failingHeads = 0;
    lockedDeletes = 0;
    deletes = 0;
    aborted = false;
    slow = false;
    closedAt = 0;
  });
  after(async () => {
    server.closeAllConnections();
    server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('reports the bytes as they are sent, before the PATCH is answered', async () => {
    const result = await resumableUpload(transport, '/v2/images/i', file, { onProgress: (n) => progress.push(n) });
    assert.equal(result.digests.sha512, createHash('sha512').update(data).digest('hex'));
    assert.ok(seenBeforeAnswer >= data.length - MiB, `progress had reached ${seenBeforeAnswer} of ${data.length} when the server answered`);
    assert.ok(progress.filter((n) => n < data.length).length >= 3, 'several steps on the way');
    assert.equal(progress.at(-1), data.length);
  });

  it('after a cut, reports the offset the HEAD gave, and none when the HEAD failed', async () => {
    cutAfter = 2 * MiB;
    failingHeads = 1;
    const retries: (number | null)[] = [];
    const result = await resumableUpload(transport, '/v2/images/i', file, { backoffMs: 5, onProgress: (n) => progress.push(n), onRetry: (_e, at) => retries.push(at) });
    // The cut PATCH (the HEAD fails), the PATCH from 0 (409; the HEAD says 2 MiB), then the rest.
    assert.deepEqual(retries, [null, 2 * MiB]);
    assert.equal(result.resumes, 2);
    assert.deepEqual(Buffer.concat(staged), data);
    assert.equal(result.digests.md5, createHash('md5').update(data).digest('hex'));
    assert.ok(progress.includes(2 * MiB), 'the progress went back to what PIR holds');
  });

  it('acts on a 503 answered mid-PATCH at once, without waiting to send a body the server stopped reading', async () => {
    refuseAfter = 2 * MiB;
    const retries: (number | null)[] = [];
    const started = Date.now();
    const result = await Promise.race([
      resumableUpload(transport, '/v2/images/i', file, { backoffMs: 5, onRetry: (_e, at) => retries.push(at) }),
      new Promise<null>((resolve) => setTimeout(() => resolve(null), 10_000)),
    ]);
    assert.ok(result, 'the upload was still waiting after 10 s');
    assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
    assert.deepEqual(retries, [2 * MiB], 'resumed from the offset the HEAD gave');
    assert.deepEqual(Buffer.concat(staged), data);
    assert.equal(result.digests.sha512, createHash('sha512').update(data).digest('hex'));
  });

  it('asks again when the creation is answered 503 (PIR made nothing), and gives up after maxRetries', async () => {
    unavailableCreates = 2;
    const result = await resumableUpload(transport, '/v2/images/i', file, { backoffMs: 5 });
    assert.equal(result.digests.sha512, createHash('sha512').update(data).digest('hex'));
    unavailableCreates = 99;
    await assert.rejects(resumableUpload(transport, '/v2/images/i', file, { backoffMs: 1, maxRetries: 2 }), (e: unknown) => e instanceof PirApiError && e.status === 503);
    assert.equal(unavailableCreates, 96, 'three creations were asked for: the first and two retries');
  });

  it('terminates with DELETE, asking again while the upload is locked (423)', async () => {
    lockedDeletes = 2;
    await terminateUpload(transport, '/v2/images/i/uploads/u');
    assert.equal(deletes, 3);
    lockedDeletes = 99;
    await assert.rejects(terminateUpload(transport, '/v2/images/i/uploads/u', 3), (e: unknown) => e instanceof PirApiError && e.status === 423);
  });

  it('a stop cuts the PATCH in flight and tells where the upload is', async () => {
    const stop = new AbortController();
    let location = '';
    const upload = resumableUpload(transport, '/v2/images/i', file, {
      signal: stop.signal,
      onCreated: (l) => { location = l; },
      onProgress: (n) => { if (n > MiB) stop.abort(); },
    });
    await assert.rejects(upload, (e: Error) => e.name === 'AbortError');
    assert.equal(location, '/v2/images/i/uploads/u');
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(aborted, 'the server saw the PATCH cut');
    assert.ok(offset() < data.length);
  });

  it('a stop resets the connection: PIR need not first read what the socket still buffered', async () => {
    slow = true;
    const stop = new AbortController();
    let stoppedAt = 0;
    const upload = resumableUpload(transport, '/v2/images/i', file, {
      signal: stop.signal,
      onProgress: (n) => { if (n > 3 * MiB && !stoppedAt) { stoppedAt = Date.now(); stop.abort(); } },
    });
    await assert.rejects(upload, (e: Error) => e.name === 'AbortError');
    await new Promise((r) => setTimeout(r, 1500));
    assert.ok(closedAt > 0, 'the server saw the request end');
    const buffered = Math.max(0, 3 * MiB - offset());
    assert.ok(closedAt - stoppedAt < 500, `the server saw the end ${closedAt - stoppedAt} ms after the stop, with ${buffered} bytes still to read at 1 MiB/s`);
  });
});
