/**
 * `pir image create --resumable` across a proxy that cuts its connection (the upload resumes
 * from the server's offset and the digests still match), and `pir image share` / `share list` /
 * `share revoke` against a `pir serve` started here, output in pipes.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cuttingProxy } from '../support/cutting-proxy.js';
import { makeTempDir, removeDir } from '../support/images.js';
import { runCli, type CliResult } from '../support/pir-cli.js';
import { freePort, startPirProcess, testLogDir, type PirProcess } from '../support/pir-process.js';

const TOKEN = 'e2e-cli-tus-token-0123456789abcdefgh';
const MiB = 2 ** 20;

describe('pir image create --resumable and pir image share', () => {
  let dir: string;
  let home: string;
  let pir: PirProcess;
  let url: string;
  let port: number;
  const cli = (args: string[], env: Record<string, string> = {}): Promise<CliResult> => runCli(args, { HOME: home, PIR_URL: url, PIR_TOKEN: TOKEN, ...env });

  before(async () => {
    dir = await makeTempDir('pir-e2e-cli-tus-');
    home = join(dir, 'home');
    await mkdir(home);
    port = await freePort();
    url = `http://127.0.0.1:${port}`;
    pir = await startPirProcess('serve', { PIR_DATA_DIR: join(dir, 'data'), PIR_PORT: String(port), PIR_ADMIN_TOKEN: TOKEN }, testLogDir('cli-tus'), 'serve');
  });
  after(async () => {
    await pir?.stop();
    if (dir) await removeDir(dir);
  });

  it('resumes a cut upload and ends active with the digests it computed', async () => {
    const file = join(dir, 'disk.raw');
    const data = randomBytes(12 * MiB);
    data.fill(0, 0, 4096);
    await writeFile(file, data);
    const proxy = await cuttingProxy(port, [3 * MiB, 4 * MiB]);
    try {
      const r = await cli(['image', 'create', '--name', 'tus', '--disk-format', 'raw', '--file', file, '--resumable', '--format', 'json'], { PIR_URL: `http://127.0.0.1:${proxy.port}` });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(proxy.cuts(), 2);
      assert.match(r.stderr, /connection lost .*; resuming at byte \d+ \(attempt 1\)/);
      const image = JSON.parse(r.stdout);
      assert.equal(image.status, 'active');
      assert.equal(image.os_hash_value, createHash('sha512').update(data).digest('hex'));
      assert.match(r.stderr, new RegExp(`sha512 ${image.os_hash_value.slice(0, 16)}`));
    } finally {
      await proxy.close();
    }
    const usage = await cli(['image', 'create', '--name', 'x', '--disk-format', 'raw', '--file', file, '--resumable', '--import']);
    assert.equal(usage.code, 2, usage.stderr);
  });

  it('shares by link, lists the uses, revokes', async () => {
    const file = join(dir, 'share.raw');
    const data = randomBytes(MiB);
    await writeFile(file, data);
    const created = await cli(['image', 'create', '--name', 'shared', '--disk-format', 'raw', '--file', file, '--format', 'json']);
    assert.equal(created.code, 0, created.stderr);
    const id = JSON.parse(created.stdout).id as string;

    const shared = await cli(['image', 'share', id, '--expires-in', '600', '--format', 'json']);
    assert.equal(shared.code, 0, shared.stderr);
    const link = JSON.parse(shared.stdout);
    assert.match(link.url, /\/v2\/shared\/[A-Za-z0-9_-]{64}$/);
    const got = await fetch(link.url);
    assert.equal(got.status, 200);
    assert.deepEqual(Buffer.from(await got.arrayBuffer()), data);

    let listed: { id: string; uses: number }[] = [];
    for (let i = 0; i < 50; i++) {
      const r = await cli(['image', 'share', 'list', id, '--format', 'json']);
      assert.equal(r.code, 0, r.stderr);
      listed = JSON.parse(r.stdout);
      if (listed[0]?.uses === 1) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(listed.length, 1);
    assert.equal(listed[0]!.id, link.id);
    assert.equal(listed[0]!.uses, 1);
    const table = await cli(['image', 'share', 'list', id]);
    assert.match(table.stdout, /^id\s+expires_at\s+uses\s+created_by$/m);

    const revoked = await cli(['image', 'share', 'revoke', id, link.id]);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.equal((await fetch(link.url)).status, 404);
    const again = await cli(['image', 'share', 'revoke', id, link.id]);
    assert.equal(again.code, 4, again.stderr);
    assert.match(again.stderr, /share link/);
    const bad = await cli(['image', 'share', id, '--expires-in', 'soon']);
    assert.equal(bad.code, 2, bad.stderr);
  });
});
