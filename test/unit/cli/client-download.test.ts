/**
 * Where `pir image download --file` writes: a regular file through FILE.part; through a symbolic
 * link, its target (the link stays); a device as it is, never renamed over (a .part renamed onto
 * /dev/null once replaced the device); a directory or a dangling link refused before any request;
 * a stream (standard output) with the digests checked at the end.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { ChecksumMismatchError, DownloadTargetError, Transport, downloadImage, downloadToStream } from '../../../client/index.js';

describe('client download destinations', () => {
  let dir: string;
  let server: http.Server;
  let transport: Transport;
  let requests = 0;
  const data = randomBytes(3 * 2 ** 20 + 17);
  const expect = { size: data.length, sha512: createHash('sha512').update(data).digest('hex'), md5: createHash('md5').update(data).digest('hex') };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pir-download-'));
    server = http.createServer((_req, res) => {
      requests++;
      res.writeHead(200, { 'content-length': data.length });
      res.end(data);
    });
    server.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    transport = new Transport(`http://127.0.0.1:${(server.address() as { port: number }).port}`, 't');
  });
  after(async () => {
    server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('writes a regular file through its .part, and through a symbolic link writes its target', async () => {
    const target = join(dir, 'target.img');
    await writeFile(target, 'old');
    const link = join(dir, 'link.img');
    await symlink(target, link);
    const result = await downloadImage(transport, 'x', link, expect);
    assert.deepEqual(result.verified, { md5: true, sha512: true });
    assert.ok((await lstat(link)).isSymbolicLink(), 'the link is still a link');
    assert.ok((await readFile(target)).equals(data), 'its target holds the image');
    await assert.rejects(lstat(`${link}.part`), { code: 'ENOENT' });
  });

  it('writes a device as it is: a link to /dev/null leaves /dev/null a character device', async () => {
    const link = join(dir, 'null.img');
    await symlink('/dev/null', link);
    const result = await downloadImage(transport, 'x', link, expect);
    assert.equal(result.size, data.length);
    assert.ok((await lstat('/dev/null')).isCharacterDevice());
    assert.ok((await lstat(link)).isSymbolicLink());
    await assert.rejects(lstat('/dev/null.part'), { code: 'ENOENT' });
  });

  it('refuses a directory and a dangling link before any request', async () => {
    const before = requests;
    await assert.rejects(downloadImage(transport, 'x', dir, expect), (e: Error) => e instanceof DownloadTargetError && /is a directory/.test(e.message));
    const dangling = join(dir, 'dangling.img');
    await symlink(join(dir, 'nothing'), dangling);
    await assert.rejects(downloadImage(transport, 'x', dangling, expect), (e: Error) => e instanceof DownloadTargetError && /symbolic link to nothing/.test(e.message));
    assert.equal(requests, before);
  });

  it('streams to a writable (standard output), verifying the digests at the end', async () => {
    const sink = new PassThrough();
    const chunks: Buffer[] = [];
    sink.on('data', (c: Buffer) => chunks.push(c));
    const result = await downloadToStream(transport, 'x', sink, expect);
    assert.ok(Buffer.concat(chunks).equals(data));
    assert.deepEqual(result.verified, { md5: true, sha512: true });
    const wrong = { ...expect, sha512: 'ab'.repeat(64) };
    await assert.rejects(downloadToStream(transport, 'x', new PassThrough().resume(), wrong), (e: Error) => e instanceof ChecksumMismatchError && /is not the image/.test(e.message));
  });
});
