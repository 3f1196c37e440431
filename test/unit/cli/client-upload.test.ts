import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Transport, TransportError, sendFile } from '../../../client/index.js';

describe('client sendFile', () => {
  let dir: string;
  let file: string;
  let data: Buffer;
  let server: http.Server;
  let base: string;
  const received: { headers: http.IncomingHttpHeaders; trailers: NodeJS.Dict<string>; sha512: string; bytes: number }[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pir-send-'));
    file = join(dir, 'data.bin');
    data = randomBytes(5 * 2 ** 20 + 4321);
    await writeFile(file, data);
    server = http.createServer((req, res) => {
      if (req.url === '/early') {
        // Answer before reading the body, as PIR does for a refused size, and close.
        res.writeHead(413, { 'content-type': 'application/json', connection: 'close' });
        return void res.end(JSON.stringify({ error: { code: 413, message: 'too big', error_code: 'too_large' } }));
      }
      const hash = createHash('sha512');
      let bytes = 0;
      req.on('data', (c: Buffer) => { hash.update(c); bytes += c.length; });
      req.on('end', () => {
        received.push({ headers: req.headers, trailers: req.trailers, sha512: hash.digest('hex'), bytes });
        res.writeHead(204).end();
      });
    });
    server.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  it('sends the file chunked with x-openstack-image-size, hashes what it sent and sends the digests as trailers', async () => {
    const progress: number[] = [];
    const sent = await sendFile(new Transport(base, 'tok'), 'PUT', '/v2/images/x/file', file, { onProgress: (n) => progress.push(n) });
    assert.equal(sent.response.status, 204);
    assert.equal(sent.sent, data.length);
    assert.deepEqual(sent.digests, { md5: createHash('md5').update(data).digest('hex'), sha512: createHash('sha512').update(data).digest('hex') });
    const got = received.at(-1)!;
    assert.equal(got.bytes, data.length);
    assert.equal(got.sha512, sent.digests!.sha512);
    assert.equal(got.headers['transfer-encoding'], 'chunked');
    assert.equal(got.headers.trailer, 'Repr-Digest, Content-MD5');
    assert.equal(got.headers['x-openstack-image-size'], String(data.length));
    const base64 = (hex: string) => Buffer.from(hex, 'hex').toString('base64');
    assert.equal(got.trailers['repr-digest'], `sha-512=:${base64(sent.digests!.sha512)}:`);
    assert.equal(got.trailers['content-md5'], base64(sent.digests!.md5));
    assert.equal(got.headers['x-auth-token'], 'tok');
    assert.equal(progress.at(-1), data.length);
    assert.ok(progress.every((n, i) => i === 0 || n > progress[i - 1]!));
  });

  it('sends Content-Length without hashing, and chunked when asked', async () => {
    const plain = await sendFile(new Transport(base, null), 'PUT', '/x', file, { hash: false });
    assert.equal(plain.response.status, 204);
    assert.equal(received.at(-1)!.headers['content-length'], String(data.length));
    const sent = await sendFile(new Transport(base, null), 'PUT', '/x', file, { hash: false, headers: { 'transfer-encoding': 'chunked' } });
    assert.equal(sent.response.status, 204);
    assert.equal(sent.digests, null);
    const got = received.at(-1)!;
    assert.equal(got.headers['transfer-encoding'], 'chunked');
    assert.equal(got.headers['content-length'], undefined);
    assert.equal(got.headers['x-auth-token'], undefined);
  });

  it('stops sending when the server answers first: returns that answer, or a transport error if the close won the race', async () => {
    for (let i = 0; i < 5; i++) {
      const outcome = await sendFile(new Transport(base, 'tok'), 'PUT', '/early', file).catch((error: Error) => error);
      if (outcome instanceof Error) {
        // The server closed while bytes were in flight; Node reports the write error and may drop the answer.
        assert.ok(outcome instanceof TransportError, String(outcome));
        assert.match(outcome.message, /broke \((EPIPE|ECONNRESET)\)/);
        continue;
      }
      assert.equal(outcome.response.status, 413);
      assert.equal(outcome.response.body.error.error_code, 'too_large');
      assert.equal(outcome.digests, null);
      assert.ok(outcome.sent < data.length);
    }
  });
});
