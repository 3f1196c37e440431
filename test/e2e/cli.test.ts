/**
 * The `pir` command against a `pir serve` started here, with output in pipes (no terminal):
 * upload and follow, refusals, exit codes, verified and resumed downloads, batch reruns,
 * profiles, a Keystone login, machine-readable output; and in a tmux pseudo-terminal, the
 * progress bar.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { chmod, copyFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { ensureQemuImg, makeImage, makeTempDir, patchFile, removeDir } from '../support/images.js';
import { PIR_CLI, runCli, startCli, type CliResult } from '../support/pir-cli.js';
import { fileDigests } from '../support/pir-client.js';
import { freePort, startPirProcess, testLogDir, waitFor, type PirProcess } from '../support/pir-process.js';
import { inCI } from '../support/services.js';

const TOKEN = 'e2e-cli-token-0123456789abcdefghijkl';
const logDir = testLogDir('cli');
const MiB = 2 ** 20;
const STAGE_LINE = /^unpack ✓ \d+ ms · inspect ✓ \d+ ms · checksum ✓ \d+ ms · promote ✓ \d+ ms → active$/m;

describe('the pir command against pir serve', () => {
  let dir: string;
  let home: string;
  let pir: PirProcess;
  let url: string;
  /** Runs pir with PIR_URL/PIR_TOKEN set (and an empty HOME, so no config file). */
  let cli: (args: string[], env?: Record<string, string | null>) => Promise<CliResult>;
  let base: string;

  before(async () => {
    ensureQemuImg();
    dir = await makeTempDir('pir-e2e-cli-');
    home = join(dir, 'home');
    await mkdir(home);
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    pir = await startPirProcess('serve', { PIR_DATA_DIR: join(dir, 'data'), PIR_PORT: String(port), PIR_ADMIN_TOKEN: TOKEN }, logDir, 'cli-serve');
    cli = (args, env = {}) => runCli(args, { HOME: home, PIR_URL: url, PIR_TOKEN: TOKEN, ...env });
    base = await makeImage(dir, 'qcow2', { size: '64M', name: 'base.qcow2' });
  });
  after(async () => {
    await pir?.stop();
    if (dir) await removeDir(dir);
  });

  const idOf = (result: CliResult) => (JSON.parse(result.stdout) as { id: string }).id;

  it('create --wait: uploads, prints the sent digests and the stage line, ends active', async () => {
    const digests = await fileDigests(base);
    const r = await cli(['image', 'create', '--name', 'cli-qcow2', '--disk-format', 'qcow2', '--file', base, '--property', 'os_distro=debian', '--tag', 'e2e', '--wait']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^created image [0-9a-f-]{36} \(cli-qcow2\)$/m);
    assert.match(r.stderr, new RegExp(`^sent 192\\.0 KiB in [\\d.]+ s \\(.*\\); md5 ${digests.md5}, sha512 ${digests.sha512.slice(0, 16)}…$`, 'm'));
    assert.match(r.stderr, STAGE_LINE);
    assert.match(r.stdout, /^status\s+active$/m);
    assert.match(r.stdout, new RegExp(`^checksum\\s+${digests.md5}$`, 'm'));
    assert.match(r.stdout, /^os_distro\s+debian$/m);
    assert.match(r.stdout, /^pir_pipeline\s+run 1 \(upload\): unpack ✓/m);
  });

  it('create --import --wait --format json: stage + glance-direct, JSON on stdout only', async () => {
    const raw = join(dir, 'import.raw');
    await writeFile(raw, randomBytes(3 * MiB));
    const r = await cli(['image', 'create', '--name', 'cli-import', '--disk-format', 'raw', '--file', raw, '--import', '--wait', '--format', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const image = JSON.parse(r.stdout);
    assert.equal(image.status, 'active');
    assert.equal(image.pir_pipeline.method, 'glance-direct');
    assert.equal(image.os_hash_value, (await fileDigests(raw)).sha512);
    assert.match(r.stderr, STAGE_LINE);
  });

  it('create --verify-first and --sha512: PIR verifies the hash given at create', async () => {
    const raw = join(dir, 'verify.raw');
    await writeFile(raw, randomBytes(MiB));
    const good = await cli(['image', 'create', '--name', 'v', '--disk-format', 'raw', '--file', raw, '--verify-first', '--format', 'json']);
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stderr, /^hashed .*verify\.raw: 1\.0 MiB in/m);
    assert.equal(JSON.parse(good.stdout).status, 'active');
    const wrong = 'ab'.repeat(64);
    const bad = await cli(['image', 'create', '--name', 'w', '--disk-format', 'raw', '--file', raw, '--sha512', wrong]);
    assert.equal(bad.code, 3, bad.stderr);
    assert.match(bad.stderr, /refused at the checksum stage \(checksum_mismatch\).*os_hash_value given at create was a{1}b/);
  });

  it('a hostile image: exit 3 and the reason, with --wait and without', async () => {
    const evil = await makeImage(dir, 'qcow2', { name: 'evil.qcow2', backing: base, backingFormat: 'qcow2' });
    const waited = await cli(['image', 'create', '--name', 'evil', '--disk-format', 'qcow2', '--file', evil, '--wait']);
    assert.equal(waited.code, 3, waited.stderr);
    assert.match(waited.stderr, /inspect ✗ → killed/);
    assert.match(waited.stderr, /^pir: image [0-9a-f-]{36} was refused at the inspect stage \(qcow2_backing_file\): .*backing file.*qemu-img convert/m);
    assert.equal(waited.stdout, '');
    const direct = await cli(['image', 'create', '--name', 'evil', '--disk-format', 'qcow2', '--file', evil]);
    assert.equal(direct.code, 3);
    assert.match(direct.stderr, /refused at the inspect stage \(qcow2_backing_file\)/);
    const id = /image ([0-9a-f-]{36}) was refused/.exec(direct.stderr)![1]!;
    const waitAgain = await cli(['image', 'wait', id]);
    assert.equal(waitAgain.code, 3);
    // An empty file for a format with a header: refused by the upload itself, the image (queued, no data) deleted.
    const empty = join(dir, 'empty.qcow2');
    await writeFile(empty, Buffer.alloc(0));
    const nothing = await cli(['image', 'create', '--name', 'nothing', '--disk-format', 'qcow2', '--file', empty, '--wait']);
    assert.equal(nothing.code, 3, nothing.stderr);
    assert.match(nothing.stderr, /refused at the upload stage \(empty_image\): .*0 bytes long, which no qcow2 image is.*back in queued/);
    const queued = /image ([0-9a-f-]{36}) was refused/.exec(nothing.stderr)![1]!;
    assert.match(nothing.stderr, new RegExp(`^pir: deleted image ${queued}, which this command made: its data never got in$`, 'm'));
    assert.equal((await cli(['image', 'show', queued])).code, 4);
  });

  it('exit codes: not found 4, bad token 5, no token 5, usage 2, unreachable 1', async () => {
    const missing = await cli(['image', 'show', '00000000-0000-4000-8000-000000000000']);
    assert.equal(missing.code, 4);
    assert.match(missing.stderr, /^pir: .*was not found/m);
    const badToken = await cli(['image', 'list'], { PIR_TOKEN: 'wrong' });
    assert.equal(badToken.code, 5);
    assert.match(badToken.stderr, /Check the token \(--token, PIR_TOKEN/);
    const noToken = await cli(['image', 'list'], { PIR_TOKEN: null });
    assert.equal(noToken.code, 5);
    assert.match(noToken.stderr, /no token: pass --token, set PIR_TOKEN/);
    for (const args of [['image', 'create', '--name', 'x', '--file', base], ['image', 'frobnicate'], ['image', 'list', '--format', 'xml'], ['image', 'create', '--name', 'x', '--disk-format', 'floppy', '--file', base], ['image', 'list', '--limit', 'many']]) {
      const r = await cli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^pir: error: /m);
      assert.match(r.stderr, /\(add --help for usage\)/);
    }
    const noFile = await cli(['image', 'create', '--name', 'x', '--disk-format', 'raw', '--file', join(dir, 'nope.raw')]);
    assert.equal(noFile.code, 2);
    assert.match(noFile.stderr, /nope\.raw: no such file/);
    // Checked before any image is made: a directory, and a key=value without '=' (said, not silent).
    const before = (await cli(['image', 'list', '--all', '--format', 'json'])).stdout;
    const aDirectory = await cli(['image', 'create', '--name', 'x', '--disk-format', 'raw', '--file', dir]);
    assert.equal(aDirectory.code, 2);
    assert.match(aDirectory.stderr, /is a directory/);
    const noEquals = await cli(['image', 'create', '--name', 'x', '--disk-format', 'raw', '--file', base, '--property', 'noequals']);
    assert.equal(noEquals.code, 2);
    assert.match(noEquals.stderr, /^pir: --property takes key=value \(got 'noequals'\)/m);
    assert.equal(JSON.parse((await cli(['image', 'list', '--all', '--format', 'json'])).stdout).length, JSON.parse(before).length, 'no image was made');
    // delete goes on past an id that fails, and exits with that failure's code.
    const doomedRaw = join(dir, 'doomed.raw');
    await writeFile(doomedRaw, randomBytes(4096));
    const made = await cli(['image', 'create', '--name', 'doomed', '--disk-format', 'raw', '--file', doomedRaw, '--format', 'json']);
    assert.equal(made.code, 0, made.stderr);
    const doomed = idOf(made);
    const both = await cli(['image', 'delete', '00000000-0000-4000-8000-000000000000', doomed]);
    assert.equal(both.code, 4, both.stderr);
    assert.match(both.stderr, /^pir: 00000000-0000-4000-8000-000000000000: .*not found/m);
    assert.match(both.stderr, new RegExp(`^deleted ${doomed}$`, 'm'));
    const unreachable = await cli(['image', 'list'], { PIR_URL: `http://127.0.0.1:${await freePort()}` });
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, /cannot reach http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED\. Is PIR running there\?/);
    // A server that takes the connection and never answers: the command fails after --http-timeout, not never.
    const silent = net.createServer((socket) => socket.resume());
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    try {
      const silentUrl = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
      const started = Date.now();
      const hung = await cli(['--http-timeout', '1', 'image', 'list'], { PIR_URL: silentUrl });
      assert.equal(hung.code, 1, hung.stderr);
      assert.match(hung.stderr, /went silent: nothing was sent or received for 1 s; wait longer with --http-timeout/);
      assert.ok(Date.now() - started < 15_000, 'it gave up about when asked');
      const fromEnv = await cli(['image', 'list'], { PIR_URL: silentUrl, PIR_HTTP_TIMEOUT: '0.5' });
      assert.equal(fromEnv.code, 1, fromEnv.stderr);
      assert.match(fromEnv.stderr, /for 0\.5 s/);
      const badEnv = await cli(['image', 'list'], { PIR_URL: silentUrl, PIR_HTTP_TIMEOUT: 'soon' });
      assert.equal(badEnv.code, 2);
      assert.match(badEnv.stderr, /PIR_HTTP_TIMEOUT must be a number of seconds > 0 \(got 'soon'\)/);
    } finally {
      silent.close();
    }
    const help = await cli(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Exit codes:\n  0  success/);
    for (const sub of [['image', '--help'], ['image', 'create', '--help'], ['serve', '--help'], ['completion', '--help']]) {
      assert.equal((await cli(sub)).code, 0, sub.join(' '));
    }
  });

  it('list: filters pass through, --all pages, json and yaml parse', async () => {
    for (const name of ['page-a', 'page-b', 'page-c']) {
      assert.equal((await cli(['image', 'create', '--name', name, '--disk-format', 'qcow2', '--file', base])).code, 0);
    }
    const json = await cli(['image', 'list', '--filter', 'name=page-b', '--format', 'json']);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout).map((i: { name: string }) => i.name), ['page-b']);
    const all = await cli(['image', 'list', '--status', 'active', '--limit', '1', '--all', '--format', 'yaml']);
    assert.equal(all.code, 0, all.stderr);
    const images = parseYaml(all.stdout) as { name: string; status: string }[];
    assert.ok(images.length >= 4);
    assert.ok(images.every((i) => i.status === 'active'));
    assert.ok(['page-a', 'page-b', 'page-c'].every((n) => images.some((i) => i.name === n)));
    const onePage = await cli(['image', 'list', '--limit', '1']);
    assert.match(onePage.stdout, /^id\s+name\s+status\s+disk_format\s+size\s+visibility$/m);
    assert.match(onePage.stderr, /more images: add --all, or --marker [0-9a-f-]{36}/);
  });

  it('update: a JSON patch of name, properties, visibility and protection', async (t) => {
    const created = await cli(['image', 'create', '--name', 'to-update', '--disk-format', 'qcow2', '--file', base, '--property', 'old=1', '--format', 'json']);
    const id = idOf(created);
    const nothing = await cli(['image', 'update', id]);
    assert.equal(nothing.code, 2);
    assert.match(nothing.stderr, /nothing to change/);
    const r = await cli(['image', 'update', id, '--name', 'updated', '--property', 'os_distro=debian', '--remove-property', 'old', '--protected', '--format', 'json']);
    if (r.code === 4 && /There is no PATCH/.test(r.stderr)) {
      t.skip('PATCH /v2/images/{id} is not on this branch yet');
      return;
    }
    assert.equal(r.code, 0, r.stderr);
    const image = JSON.parse(r.stdout);
    assert.equal(image.name, 'updated');
    assert.equal(image.os_distro, 'debian');
    assert.equal(image.old, undefined);
    assert.equal(image.protected, true);
    // 'old' is gone now: the same --remove-property is skipped, as glanceclient's, and the rest applies.
    const again = await cli(['image', 'update', id, '--name', 'again', '--remove-property', 'old', '--format', 'json']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(JSON.parse(again.stdout).name, 'again');
    assert.match(again.stderr, new RegExp(`^\\(image ${id} has no property 'old': nothing to remove\\)$`, 'm'));
    const refused = await cli(['image', 'delete', id]);
    assert.equal(refused.code, 1, refused.stderr); // 403 protected_image: the image's state, not the caller's rights
    assert.match(refused.stderr, /\(HTTP 403, protected_image\)/);
    assert.equal((await cli(['image', 'update', id, '--unprotected'])).code, 0);
    assert.equal((await cli(['image', 'delete', id])).code, 0);
  });

  describe('download', () => {
    let id: string;
    let source: string;
    let digests: { size: number; md5: string; sha512: string };
    before(async () => {
      source = join(dir, 'download.raw');
      await writeFile(source, randomBytes(24 * MiB));
      digests = await fileDigests(source);
      const r = await cli(['image', 'create', '--name', 'dl', '--disk-format', 'raw', '--file', source, '--format', 'json']);
      assert.equal(r.code, 0, r.stderr);
      id = idOf(r);
    });

    it('verifies sha512 and md5 and writes the file', async () => {
      const out = join(dir, 'dl-1.raw');
      const r = await cli(['image', 'download', id, '--file', out, '--format', 'json']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /sha512 verified, md5 verified/);
      const result = JSON.parse(r.stdout);
      assert.deepEqual(result.verified, { md5: true, sha512: true });
      assert.equal(result.resumed_from, 0);
      assert.deepEqual(await fileDigests(out), digests);
    });

    it('--file - writes the image to standard output, every byte through a slow pipe; a directory is refused', async () => {
      const child = spawn(process.execPath, [PIR_CLI, 'image', 'download', id, '--file', '-'], { env: { PATH: process.env.PATH ?? '', HOME: home, PIR_URL: url, PIR_TOKEN: TOKEN }, stdio: ['ignore', 'pipe', 'pipe'] });
      const sha512 = createHash('sha512');
      let size = 0;
      let stderr = '';
      child.stderr!.setEncoding('utf8').on('data', (c: string) => { stderr += c; });
      child.stdout!.pause(); // a reader that lags: pir must not exit with bytes still in the pipe's queue
      child.stdout!.on('data', (c: Buffer) => { sha512.update(c); size += c.length; });
      setTimeout(() => child.stdout!.resume(), 500);
      const [code] = await once(child, 'close');
      assert.equal(code, 0, stderr);
      assert.equal(size, digests.size);
      assert.equal(sha512.digest('hex'), digests.sha512);
      assert.match(stderr, /to standard output: .*sha512 verified, md5 verified/);
      const toDir = await cli(['image', 'download', id, '--file', dir]);
      assert.equal(toDir.code, 2);
      assert.match(toDir.stderr, /is a directory; give the path of the file to write/);
    });

    it('creates and downloads an empty raw disk (0 bytes), verified', async () => {
      const empty = join(dir, 'empty.raw');
      await writeFile(empty, Buffer.alloc(0));
      const created = await cli(['image', 'create', '--name', 'dl-empty', '--disk-format', 'raw', '--file', empty, '--wait', '--format', 'json']);
      assert.equal(created.code, 0, created.stderr);
      assert.equal(JSON.parse(created.stdout).size, 0);
      const out = join(dir, 'dl-empty.raw');
      const r = await cli(['image', 'download', idOf(created), '--file', out, '--format', 'json']);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout).verified, { md5: true, sha512: true });
      assert.equal((await stat(out)).size, 0);
      await assert.rejects(stat(out + '.part'));
    });

    it('resumes from a truncated .part with a Range request', async () => {
      const out = join(dir, 'dl-2.raw');
      await writeFile(out + '.part', (await readFile(source)).subarray(0, 5 * MiB + 123));
      const r = await cli(['image', 'download', id, '--file', out, '--format', 'json']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /resuming: re-hashing the 5\.0 MiB already in .*dl-2\.raw\.part/);
      assert.equal(JSON.parse(r.stdout).resumed_from, 5 * MiB + 123);
      assert.deepEqual(await fileDigests(out), digests);
      await assert.rejects(stat(out + '.part'));
    });

    it('detects a tampered .part: exit 1, the .part removed, and a rerun succeeds', async () => {
      const out = join(dir, 'dl-3.raw');
      await writeFile(out + '.part', (await readFile(source)).subarray(0, 7 * MiB));
      await patchFile(out + '.part', 4096, [0x00, 0xff, 0x00]);
      const r = await cli(['image', 'download', id, '--file', out]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /has sha512 [0-9a-f]{128}, but the image's os_hash_value is [0-9a-f]{128} \(7340032 bytes came from an earlier interrupted download\).*was removed: run the download again/);
      await assert.rejects(stat(out + '.part'));
      await assert.rejects(stat(out));
      assert.equal((await cli(['image', 'download', id, '--file', out])).code, 0);
      assert.deepEqual(await fileDigests(out), digests);
    });

    it('resumes after the connection was cut mid-download', async () => {
      const proxy = await throttlingProxy(url, 'cut', 3 * MiB);
      try {
        const out = join(dir, 'dl-4.raw');
        const cut = await cli(['image', 'download', id, '--file', out], { PIR_URL: proxy.url });
        assert.equal(cut.code, 1, cut.stderr);
        assert.match(cut.stderr, /the download was cut after \d+ bytes .*dl-4\.raw\.part keeps them: run the same command again to resume/);
        const kept = (await stat(out + '.part')).size;
        assert.ok(kept > 0 && kept <= 3 * MiB, `kept ${kept}`);
        const resumed = await cli(['image', 'download', id, '--file', out, '--format', 'json']);
        assert.equal(resumed.code, 0, resumed.stderr);
        assert.equal(JSON.parse(resumed.stdout).resumed_from, kept);
        assert.deepEqual(await fileDigests(out), digests);
      } finally {
        await proxy.close();
      }
    });

    it('SIGTERM mid-download: exit 143, and the note says the .part resumes', async () => {
      const proxy = await throttlingProxy(url, 'stall', 2 * MiB);
      try {
        const out = join(dir, 'dl-term.raw');
        const { child, done } = startCli(['image', 'download', id, '--file', out], { HOME: home, PIR_URL: proxy.url, PIR_TOKEN: TOKEN });
        await waitFor(async () => (await stat(out + '.part').catch(() => null))?.size === 2 * MiB, 30_000, '.part to reach 2 MiB');
        child.kill('SIGTERM');
        const r = await done;
        assert.equal(r.code, 143, r.stderr);
        assert.match(r.stderr, /^pir: interrupted \(SIGTERM\)$/m);
        assert.match(r.stderr, /^pir: .*dl-term\.raw\.part keeps the bytes so far: run the same command again to resume$/m);
      } finally {
        await proxy.close();
      }
    });

    it('resumes after the command was killed mid-download', async () => {
      const proxy = await throttlingProxy(url, 'stall', 2 * MiB);
      try {
        const out = join(dir, 'dl-5.raw');
        const { child, done } = startCli(['image', 'download', id, '--file', out], { HOME: home, PIR_URL: proxy.url, PIR_TOKEN: TOKEN });
        await waitFor(async () => (await stat(out + '.part').catch(() => null))?.size === 2 * MiB, 30_000, '.part to reach 2 MiB');
        child.kill('SIGKILL');
        assert.equal((await done).code, null);
        const resumed = await cli(['image', 'download', id, '--file', out, '--format', 'json']);
        assert.equal(resumed.code, 0, resumed.stderr);
        assert.equal(JSON.parse(resumed.stdout).resumed_from, 2 * MiB);
        assert.deepEqual(await fileDigests(out), digests);
      } finally {
        await proxy.close();
      }
    });
  });

  it('batch: uploads a directory, a refused file makes exit 3, a rerun skips what is active', async () => {
    const batchDir = join(dir, 'batch');
    await mkdir(batchDir);
    await copyFile(base, join(batchDir, 'one.qcow2'));
    await writeFile(join(batchDir, 'two.raw'), randomBytes(2 * MiB));
    await makeImage(batchDir, 'vmdk', { name: 'three.img', size: '16M' }); // format from magic bytes
    await makeImage(batchDir, 'qcow2', { name: 'evil.qcow2', backing: base, backingFormat: 'qcow2' });
    await writeFile(join(batchDir, 'notes.txt'), 'not matched by the pattern');
    const first = await cli(['image', 'batch', batchDir, '--pattern', '*.{qcow2,raw,img}', '--parallel', '2', '--property', 'batch=e2e']);
    assert.equal(first.code, 3, first.stderr);
    assert.match(first.stdout, /^file\s+status\s+image\s+disk_format\s+size\s+seconds\s+note$/m);
    assert.match(first.stdout, /^one\.qcow2\s+active\s+[0-9a-f-]{36}\s+qcow2\s/m);
    assert.match(first.stdout, /^two\.raw\s+active\s+[0-9a-f-]{36}\s+raw\s/m);
    assert.match(first.stdout, /^three\.img\s+active\s+[0-9a-f-]{36}\s+vmdk\s.*vmdk by magic bytes/m);
    assert.match(first.stdout, /^evil\.qcow2\s+refused\s+[0-9a-f-]{36}\s+qcow2\s.*inspect: .*backing file/m);
    assert.doesNotMatch(first.stdout, /notes\.txt/);
    assert.match(first.stderr, /^\[4\/4\] /m);
    assert.match(first.stderr, /^4 files: 3 uploaded, 0 skipped, 1 refused, 0 failed$/m);
    const second = await cli(['image', 'batch', batchDir, '--pattern', '*.{qcow2,raw,img}', '--format', 'json']);
    assert.equal(second.code, 3, second.stderr);
    const rows = JSON.parse(second.stdout) as { file: string; status: string }[];
    assert.deepEqual(Object.fromEntries(rows.map((r) => [r.file, r.status])), { 'evil.qcow2': 'refused', 'one.qcow2': 'skipped', 'three.img': 'skipped', 'two.raw': 'skipped' });
    const good = await cli(['image', 'batch', batchDir, '--pattern', '{one,two}.*']);
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stderr, /2 files: 0 uploaded, 2 skipped/);
  });

  it('profiles: the config file is used, and refused when others may read it', async () => {
    const config = join(dir, 'config.json');
    await writeFile(config, JSON.stringify({ default_profile: 'here', profiles: { here: { url, token: TOKEN }, other: { url: 'http://127.0.0.1:1', token: 'x' } } }));
    await chmod(config, 0o644);
    const open = await cli(['image', 'list'], { PIR_CONFIG: config, PIR_URL: null, PIR_TOKEN: null });
    assert.equal(open.code, 2);
    assert.match(open.stderr, /has mode 0644, so other users can read the tokens and passwords in it; run: chmod 600 /);
    await chmod(config, 0o600);
    const used = await cli(['image', 'list', '--format', 'json'], { PIR_CONFIG: config, PIR_URL: null, PIR_TOKEN: null });
    assert.equal(used.code, 0, used.stderr);
    assert.ok(Array.isArray(JSON.parse(used.stdout)));
    const other = await cli(['image', 'list', '--profile', 'other'], { PIR_CONFIG: config, PIR_URL: null, PIR_TOKEN: null });
    assert.equal(other.code, 1);
    assert.match(other.stderr, /cannot reach http:\/\/127\.0\.0\.1:1/);
    const flagsWin = await cli(['image', 'list', '--profile', 'other', '--url', url, '--token', TOKEN], { PIR_CONFIG: config, PIR_URL: null, PIR_TOKEN: null });
    assert.equal(flagsWin.code, 0, flagsWin.stderr);
    const unknown = await cli(['image', 'list', '--profile', 'nope'], { PIR_CONFIG: config });
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /no profile 'nope' in .*; profiles there: here, other/);
  });

  it('Keystone: a password login finds the image endpoint in the catalog; a wrong password is exit 5', async () => {
    const keystone = await fakeKeystone(url, TOKEN);
    try {
      const env = { PIR_URL: null, PIR_TOKEN: null };
      const args = ['--os-auth-url', `${keystone.url}/v3`, '--os-username', 'demo', '--os-project-name', 'images'];
      const ok = await cli(['image', 'list', '--format', 'json', ...args, '--os-password', 'secret'], env);
      assert.equal(ok.code, 0, ok.stderr);
      assert.ok(Array.isArray(JSON.parse(ok.stdout)));
      assert.deepEqual(keystone.logins[0], { user: 'demo', domain: 'Default', project: 'images' });
      const bad = await cli(['image', 'list', ...args, '--os-password', 'wrong'], env);
      assert.equal(bad.code, 5);
      assert.match(bad.stderr, /Keystone at .* refused the login for user 'demo'/);
    } finally {
      await keystone.close();
    }
  });

  it('completion: bash completes subcommands and options', async () => {
    const r = await cli(['completion', 'bash']);
    assert.equal(r.code, 0);
    const script = join(dir, 'completion.bash');
    await writeFile(script, r.stdout);
    const complete = (words: string[]) => execFileSync('bash', ['-c', `source ${script}; COMP_WORDS=(${words.join(' ')}); COMP_CWORD=${words.length - 1}; _pir_complete; echo "\${COMPREPLY[*]}"`], { encoding: 'utf8' }).trim();
    assert.equal(complete(['pir', 'image', 'dow']), 'download');
    assert.equal(complete(['pir', 'image', 'create', '--disk']), '--disk-format');
    assert.match(complete(['pir', 'se']), /^serve$/);
    assert.equal((await cli(['completion', 'zsh'])).code, 0);
  });

  it('in a terminal (tmux), create shows a progress bar with bytes, rate and ETA', async (t) => {
    const haveTmux = (() => { try { execFileSync('tmux', ['-V']); return true; } catch { return false; } })();
    if (!haveTmux) {
      if (inCI) throw new Error('CI is set but tmux is missing: bash infra/local/services.sh install tools');
      t.skip('no tmux (bash infra/local/services.sh install tools)');
      return;
    }
    const raw = join(dir, 'tty.raw');
    await writeFile(raw, randomBytes(16 * MiB));
    const socket = `pir-e2e-${process.pid}`;
    const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
    const command = `env HOME=${q(home)} PIR_URL=${q(url)} PIR_TOKEN=${q(TOKEN)} TERM=xterm ${q(process.execPath)} ${q(PIR_CLI)} image create --name tty --disk-format raw --file ${q(raw)} --wait --format json > /dev/null; echo EXIT=$?; sleep 60`;
    execFileSync('tmux', ['-L', socket, '-f', '/dev/null', 'new-session', '-d', '-s', 'pir', '-x', '200', '-y', '30', command]);
    try {
      let screen = '';
      await waitFor(() => {
        screen = execFileSync('tmux', ['-L', socket, 'capture-pane', '-p', '-t', 'pir'], { encoding: 'utf8' });
        return screen.includes('EXIT=');
      }, 60_000, 'the command to finish in tmux');
      assert.match(screen, /EXIT=0/, screen);
      assert.match(screen, /uploading tty\.raw █+ 100% \| 16\.0 MiB\/16\.0 MiB \| [\d.]+ (KiB|MiB|GiB)\/s \| ETA /, screen);
      assert.match(screen, /unpack ✓ \d+ ms · inspect ✓ \d+ ms · checksum ✓ \d+ ms · promote ✓ \d+ ms → active/, screen);
    } finally {
      try { execFileSync('tmux', ['-L', socket, 'kill-server']); } catch { /* already gone */ }
    }
  });
});

/**
 * A proxy in front of PIR that lets `limit` bytes of an image download through and then cuts
 * the connection ('cut') or stops sending without closing it ('stall'). Other calls pass as they are.
 */
async function throttlingProxy(target: string, mode: 'cut' | 'stall', limit: number): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const upstream = http.request(target + req.url, { method: req.method, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      if (!(req.method === 'GET' && req.url?.endsWith('/file') && !req.headers.range)) return void up.pipe(res);
      let sent = 0;
      up.on('data', (chunk: Buffer) => {
        if (sent >= limit) return;
        const part = chunk.subarray(0, limit - sent);
        sent += part.length;
        res.write(part);
        if (sent >= limit) {
          up.destroy();
          if (mode === 'cut') res.socket?.destroy();
        }
      });
    });
    req.pipe(upstream);
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

/** Keystone's password login, enough for the client: a catalog with PIR as the image service. */
async function fakeKeystone(pirUrl: string, token: string) {
  const logins: { user: string; domain: string; project: string }[] = [];
  const server = http.createServer((req, res) => {
    let text = '';
    req.on('data', (c) => { text += c; });
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v3/auth/tokens') return void res.writeHead(404).end();
      const auth = JSON.parse(text).auth;
      const user = auth.identity.password.user;
      logins.push({ user: user.name, domain: user.domain.name, project: auth.scope?.project?.name });
      if (user.password !== 'secret') return void res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 401, message: 'The request you have made requires authentication.' } }));
      res.writeHead(201, { 'content-type': 'application/json', 'x-subject-token': token });
      res.end(JSON.stringify({ token: { catalog: [
        { type: 'identity', endpoints: [{ interface: 'public', url: 'http://127.0.0.1:1/v3' }] },
        { type: 'image', endpoints: [{ interface: 'internal', url: 'http://127.0.0.1:1' }, { interface: 'public', url: pirUrl }] },
      ] } }));
    });
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    logins,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
