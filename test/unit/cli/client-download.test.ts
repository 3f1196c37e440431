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
import { ChecksumMismatchError, DownloadTargetError, NoImageDataError, PirClient, Transport, downloadImage, downloadToStream } from '../../../client/index.js';
import { describeError, EXIT } from '../../../cli/exit-codes.js';

describe('client download destinations', () => {
  let dir: string;
  let server: http.Server;
  let transport: Transport;
  let base: string;
  let requests = 0;
  const data = randomBytes(3 * 2 ** 20 + 17);
  const expect = { size: data.length, sha512: createHash('sha512').update(data).digest('hex'), md5: createHash('md5').update(data).digest('hex') };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pir-download-'));
    server = http.createServer((req, res) => {
      requests++;
      if (req.url === '/v2/images/queued') return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: 'queued', status: 'queued' }));
      res.writeHead(200, { 'content-length': data.length });
      res.end(data);
    });
    server.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    transport = new Transport(base, 't');
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

  it('refuses a file in a directory that does not exist (or is a file) before any request, even the image\'s GET', async () => {
    const before = requests;
    const client = new PirClient(base, 't');
    for (const [file, said] of [[join(dir, 'nowhere', 'f.img'), /nowhere does not exist; create it first/], [join(dir, 'target.img', 'f.img'), /target\.img is not a directory/]] as const) {
      await assert.rejects(client.download('x', file), (e: Error) => e instanceof DownloadTargetError && said.test(e.message));
      assert.equal(describeError(await client.download('x', file).catch((e: unknown) => e)).code, EXIT.usage);
    }
    assert.equal(requests, before);
  });

  it('says an image that is not active has no data, without an HTTP status PIR did not answer', async () => {
    const client = new PirClient(base, 't');
    const error = await client.download('queued', join(dir, 'q.img')).catch((e: unknown) => e);
    assert.ok(error instanceof NoImageDataError, String(error));
    const { code, message } = describeError(error);
    assert.equal(code, EXIT.failure);
    assert.equal(message, 'Image queued is queued, so it has no data to download; wait until it is active (pir image wait queued).');
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
