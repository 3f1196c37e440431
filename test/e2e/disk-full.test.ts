/**
 * Issue 6 point 7: an upload that fills the disk gets a 507 the operator can act on, the
 * connection is closed, the image goes back to queued, and PIR keeps serving. PIR runs on a real
 * 8 MiB tmpfs, mounted in a private user and mount namespace (unshare), so no root is needed.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeTempDir, removeDir } from '../support/images.js';
import { PirClient } from '../support/pir-client.js';
import { freePort, startPirProcess, testLogDir, type PirProcess } from '../support/pir-process.js';
import { inCI } from '../support/services.js';

const TOKEN = 'e2e-disk-full-token-0123456789abcdef';
const MiB = 1024 * 1024;

function canMountTmpfs(): boolean {
  try {
    execFileSync('unshare', ['-Urm', 'sh', '-c', 'd=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs "$d" && umount "$d"; rmdir "$d"'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** PUT …/file with a body of `size` bytes (whole MiB), sent as fast as the server takes it; resolves with the answer. */
function upload(port: number, id: string, size: number): Promise<{ status: number; headers: Record<string, unknown>; body: any }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'PUT', path: `/v2/images/${id}/file`, headers: { 'x-auth-token': TOKEN, 'content-type': 'application/octet-stream', 'content-length': size } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? JSON.parse(text) : null }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => { if (e.code !== 'EPIPE' && e.code !== 'ECONNRESET') reject(e); });
    const chunk = Buffer.alloc(MiB, 0x5a);
    let sent = 0;
    const pump = () => {
      while (sent < size) {
        sent += MiB;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

describe('a full disk (ENOSPC) during an upload', () => {
  let dir: string;
  let pir: PirProcess;
  let client: PirClient;
  let port: number;
  let usable = true;

  before(async () => {
    usable = canMountTmpfs();
    if (!usable) return;
    dir = await makeTempDir('pir-e2e-disk-full-');
    const dataDir = join(dir, 'data');
    execFileSync('mkdir', ['-p', dataDir]);
    port = await freePort();
    pir = await startPirProcess('serve', { PIR_DATA_DIR: dataDir, PIR_PORT: String(port), PIR_ADMIN_TOKEN: TOKEN }, testLogDir('disk-full'), 'serve',
      ['unshare', '-Urm', 'sh', '-c', 'mount -t tmpfs -o size=8m tmpfs "$0" && exec "$@"', dataDir]);
    client = new PirClient(`http://127.0.0.1:${port}`, TOKEN);
  });
  after(async () => {
    await pir?.stop();
    if (dir) await removeDir(dir);
  });

  it('answers 507, puts the image back in queued, and keeps serving', async (t) => {
    if (!usable) {
      if (inCI) assert.fail('this test needs `unshare -Urm` and tmpfs (user namespaces)');
      t.skip('user namespaces are not available here (unshare -Urm)');
      return;
    }
    const image = await client.createImage({ name: 'too big for the disk', disk_format: 'raw', container_format: 'bare' });
    const answer = await upload(port, image.id, 32 * MiB);
    assert.equal(answer.status, 507, JSON.stringify(answer.body));
    assert.equal(answer.body.error.error_code, 'insufficient_storage');
    assert.match(answer.body.error.message, /disk space|PIR_DATA_DIR/);
    // The rest of the body was read and discarded (a client that sends it all still gets the answer).
    assert.notEqual(answer.headers.connection, 'close');
    const after = await client.getImage(image.id);
    assert.equal(after.body.status, 'queued');
    assert.ok(!pir.output().includes('"msg":"unexpected error"'), 'no unexpected error logged');

    // Still serving: a small image goes all the way to active on the same disk.
    const small = join(dir, 'small.raw');
    await writeFile(small, Buffer.alloc(MiB, 1));
    const next = await client.createImage({ name: 'fits', disk_format: 'raw', container_format: 'bare' });
    const response = await client.putData(next.id, small);
    assert.equal(response.status, 204, JSON.stringify(response.body));
    assert.equal((await client.getImage(next.id)).body.status, 'active');
  });
});
