/**
 * What the `pir` command leaves behind, and says, when something goes wrong: a signal in the
 * middle of an upload (the tus upload ended, the image named with the command that deletes it),
 * a create or register refused after the image was made (the empty image deleted), against a
 * `pir serve` started here (PIR_MAX_IMAGE_SIZE 16 MiB), output in pipes.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stallingProxy } from '../support/cutting-proxy.js';
import { makeTempDir, removeDir } from '../support/images.js';
import { runCli, startCli, type CliResult } from '../support/pir-cli.js';
import { freePort, startPirProcess, testLogDir, waitFor, type PirProcess } from '../support/pir-process.js';

const TOKEN = 'e2e-cli-failures-token-0123456789abc';
const MiB = 2 ** 20;
const ID = '[0-9a-f-]{36}';

describe('pir when things go wrong', () => {
  let dir: string;
  let home: string;
  let pir: PirProcess;
  let port: number;
  let url: string;
  let file: string;
  let big: string;
  const env = (extra: Record<string, string | null> = {}) => ({ HOME: home, PIR_URL: url, PIR_TOKEN: TOKEN, ...extra });
  const cli = (args: string[], extra: Record<string, string | null> = {}): Promise<CliResult> => runCli(args, env(extra));
  /** The images of that name, killed ones included (a list shows those only when asked for by status). */
  const named = async (name: string) => {
    const listed = async (extra: string[]) => JSON.parse((await cli(['image', 'list', '--filter', `name=${name}`, ...extra, '--format', 'json'])).stdout) as { id: string; status: string }[];
    return [...await listed([]), ...await listed(['--status', 'killed'])];
  };
  const show = async (id: string) => JSON.parse((await cli(['image', 'show', id, '--format', 'json'])).stdout) as { status: string; size: number | null };

  before(async () => {
    dir = await makeTempDir('pir-e2e-cli-failures-');
    home = join(dir, 'home');
    await mkdir(home);
    port = await freePort();
    url = `http://127.0.0.1:${port}`;
    pir = await startPirProcess('serve', { PIR_DATA_DIR: join(dir, 'data'), PIR_PORT: String(port), PIR_ADMIN_TOKEN: TOKEN, PIR_MAX_IMAGE_SIZE: String(16 * MiB) }, testLogDir('cli-failures'), 'serve');
    file = join(dir, 'disk.raw');
    await writeFile(file, randomBytes(8 * MiB));
    big = join(dir, 'big.raw');
    await writeFile(big, randomBytes(20 * MiB));
  });
  after(async () => {
    await pir?.stop();
    if (dir) await removeDir(dir);
  });

  describe('a failed create or register deletes the image it made', () => {
    for (const mode of [[], ['--resumable'], ['--import'], ['--wait']]) {
      it(`create ${mode.join(' ') || '(direct)'} over PIR_MAX_IMAGE_SIZE: the queued image is deleted, and said so`, async () => {
        const name = `too-big${mode.join('')}`;
        const r = await cli(['image', 'create', '--name', name, '--disk-format', 'raw', '--file', big, ...mode]);
        assert.equal(r.code, 1, r.stderr);
        const id = new RegExp(`^created image (${ID})`, 'm').exec(r.stderr)![1]!;
        assert.match(r.stderr, new RegExp(`^pir: deleted image ${id}, which this command made: its data never got in$`, 'm'));
        assert.deepEqual(await named(name), []);
      });
    }

    it('create of an empty qcow2 (empty_image): exit 3, and the image is deleted', async () => {
      const empty = join(dir, 'empty.qcow2');
      await writeFile(empty, Buffer.alloc(0));
      const r = await cli(['image', 'create', '--name', 'nothing', '--disk-format', 'qcow2', '--file', empty]);
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, /refused at the upload stage \(empty_image\)/);
      assert.match(r.stderr, /^pir: deleted image [0-9a-f-]{36}, which this command made/m);
      assert.deepEqual(await named('nothing'), []);
    });

    it('register --location that PIR refuses: the image is deleted, so the same command can be run again', async () => {
      const args = ['image', 'register', 'reg-refused', '--disk-format', 'raw', '--container-format', 'bare', '--location', 'http://127.0.0.1/disk.raw'];
      for (const attempt of [1, 2]) {
        const r = await cli(args);
        assert.equal(r.code, 2, `attempt ${attempt}: ${r.stderr}`); // a value PIR refused (400)
        assert.match(r.stderr, /address_refused|uri_refused/);
        assert.match(r.stderr, /^pir: deleted image [0-9a-f-]{36}, which this command made: its data never got in$/m);
        assert.doesNotMatch(r.stderr, /exists/);
      }
      assert.deepEqual(await named('reg-refused'), []);
    });

    it('register --md5 that is not an md5 is refused before anything is made', async () => {
      const r = await cli(['image', 'register', 'reg-md5', '--disk-format', 'raw', '--container-format', 'bare', '--location', 'https://example.org/disk.raw', '--md5', 'abc']);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /--md5 <hex>' argument 'abc' is invalid\. expected 32 hexadecimal digits/);
      assert.deepEqual(await named('reg-md5'), []);
    });
  });

  it("exit codes follow README's table: a value PIR refused is 2, a protected image 1", async () => {
    const made = await cli(['image', 'create', '--name', 'codes', '--disk-format', 'raw', '--file', file, '--format', 'json']);
    assert.equal(made.code, 0, made.stderr);
    const id = (JSON.parse(made.stdout) as { id: string }).id;
    for (const [args, code] of [
      [['image', 'list', '--sort', 'colour:asc'], 'bad_sort_key'],
      [['image', 'list', '--filter', 'size_min=big'], 'bad_filter'],
      [['image', 'share', id, '--expires-in', '999999999'], 'invalid_request'],
      [['image', 'update', id, '--property', 'os_glance_x=1'], 'reserved_property'],
      [['image', 'update', id, '--property', 'status=active'], 'read_only_property'],
    ] as const) {
      const r = await cli([...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`\\(HTTP 4\\d\\d, ${code}\\)`));
    }
    const missing = await cli(['image', 'show', '00000000-0000-0000-0000-000000000000']);
    assert.equal(missing.code, 4, missing.stderr);
    assert.match(missing.stderr, /\(HTTP 404, not_found\)$/m);
    const badToken = await cli(['image', 'list'], { PIR_TOKEN: 'not-a-token' });
    assert.equal(badToken.code, 5, badToken.stderr);
    assert.match(badToken.stderr, /\(HTTP 401, token_invalid\) Check the token/);
    assert.equal((await cli(['image', 'update', id, '--protected'])).code, 0);
    const kept = await cli(['image', 'delete', id]);
    assert.equal(kept.code, 1, kept.stderr);
    assert.match(kept.stderr, /\(HTTP 403, protected_image\)/);
    assert.equal((await cli(['image', 'update', id, '--unprotected'])).code, 0);
  });

  it('a --url that is not PIR: one line that says so, exit 1, no stack and no image', async () => {
    const other = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html>hello</html>'));
    other.listen(0, '127.0.0.1');
    await once(other, 'listening');
    try {
      const otherUrl = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
      for (const args of [['image', 'list'], ['image', 'create', '--name', 'x', '--disk-format', 'raw', '--file', file]]) {
        const r = await cli(args, { PIR_URL: otherUrl });
        assert.equal(r.code, 1, r.stderr);
        assert.equal(r.stderr, `pir: ${otherUrl} did not answer as PIR/Glance's Image API: ${args[1] === 'list' ? 'GET' : 'POST'} /v2/images answered 200 (text/html): <html>hello</html>. Point the command at PIR with --url or PIR_URL.\n`);
      }
    } finally {
      other.close();
    }
  });

  it('a --url whose server answers 404 with a web page (Keystone, a file server): no PIR there, exit 1, not "not found"', async () => {
    const page = '<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n<p>The requested URL was not found on the server.</p>\n';
    const other = http.createServer((_req, res) => res.writeHead(404, { 'content-type': 'text/html; charset=utf-8' }).end(page));
    other.listen(0, '127.0.0.1');
    await once(other, 'listening');
    try {
      const otherUrl = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
      for (const args of [['image', 'list'], ['image', 'show', '3f0c0b9e-1111-2222-3333-444455556666']]) {
        const r = await cli(args, { PIR_URL: otherUrl });
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, new RegExp(`^pir: ${otherUrl} did not answer as PIR/Glance's Image API: GET /v2/images\\S* answered 404 \\(text/html\\): <!doctype html> <html lang=en> <title>404 Not Found</title>.*\\. Point the command at PIR with --url or PIR_URL\\.\n$`));
      }
    } finally {
      other.close();
    }
  });

  it('pir serve on a taken port: one line naming the port and PIR_PORT, exit 1, and the token it generated is shown', async () => {
    const taken = net.createServer();
    taken.listen(0, '127.0.0.1');
    await once(taken, 'listening');
    try {
      const takenPort = (taken.address() as AddressInfo).port;
      const data = join(dir, 'data-taken');
      const r = await runCli(['serve'], { HOME: home, PIR_DATA_DIR: data, PIR_PORT: String(takenPort), PIR_LOG_LEVEL: 'warn' });
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stderr, `pir serve: port ${takenPort} of 127.0.0.1 is taken (EADDRINUSE): stop what listens there, or choose another port with PIR_PORT\n`);
      const token = (await readFile(join(data, 'admin-token'), 'utf8')).trim();
      assert.match(r.stdout, new RegExp(`^PIR admin token \\(shown once; also in .*admin-token\\): ${token}$`, 'm'));
    } finally {
      taken.close();
    }
  });

  it('messages name what to fix: a --url ending in /v2, Keystone down, a download into no directory, a URL with a password', async () => {
    const listed = await cli(['image', 'list', '--format', 'json'], { PIR_URL: `${url}/v2/` });
    assert.equal(listed.code, 0, listed.stderr);
    const nowhere = `http://127.0.0.1:${await freePort()}`;
    const keystone = await cli(['image', 'list', '--os-auth-url', `${nowhere}/v3`, '--os-username', 'u', '--os-password', 'p'], { PIR_TOKEN: null });
    assert.equal(keystone.code, 1, keystone.stderr);
    assert.equal(keystone.stderr, `pir: cannot reach ${nowhere}: ECONNREFUSED. Is Keystone running there? Check --os-auth-url (OS_AUTH_URL, or the profile's "os_auth_url").\n`);
    const download = await cli(['image', 'download', '00000000-0000-4000-8000-000000000000', '--file', join(dir, 'no-such-dir', 'f.img')]);
    assert.equal(download.code, 2, download.stderr); // before any request: the image does not exist either (4)
    assert.match(download.stderr, /no-such-dir does not exist; create it first/);
    const secret = await cli(['image', 'list'], { PIR_URL: nowhere.replace('//', '//me:hunter2@') });
    assert.equal(secret.code, 1);
    assert.match(secret.stderr, /\(now http:\/\/\*\*\*@127\.0\.0\.1:\d+\)\.$/m);
    assert.doesNotMatch(secret.stderr, /hunter2/);
  });

  describe('a signal mid-upload', () => {
    /** Starts the upload through a proxy that stalls it after 2 MiB, and sends `signal` once PIR holds them. */
    async function interrupted(args: string[], signal: NodeJS.Signals): Promise<CliResult & { id: string }> {
      const proxy = await stallingProxy(port, 2 * MiB);
      try {
        const { child, done } = startCli(['image', 'create', '--name', `cut-${signal}`, '--disk-format', 'raw', '--file', file, ...args], env({ PIR_URL: `http://127.0.0.1:${proxy.port}` }));
        await waitFor(() => proxy.stalled(), 30_000, 'the upload to stall');
        await new Promise((r) => setTimeout(r, 300)); // PIR writes what came
        child.kill(signal);
        const r = await done;
        const id = new RegExp(`^created image (${ID})`, 'm').exec(r.stderr)?.[1];
        assert.ok(id, r.stderr);
        return { ...r, id };
      } finally {
        await proxy.close();
      }
    }

    it('Ctrl-C during --resumable ends the tus upload: the image is queued again, and the note says how to delete it', async () => {
      const r = await interrupted(['--resumable'], 'SIGINT');
      assert.equal(r.code, 130, r.stderr);
      assert.match(r.stderr, /^pir: interrupted$/m);
      assert.match(r.stderr, new RegExp(`^pir: image ${r.id} was left queued without its data \\(its upload was ended: PIR dropped the bytes\\); delete it with pir image delete ${r.id}, or create the image again\\.$`, 'm'));
      assert.doesNotMatch(r.stderr, /the upload was stopped/, 'the cut PATCH is not reported as a failure');
      assert.equal((await show(r.id)).status, 'queued');
    });

    it('SIGTERM during a direct upload: exit 143, and the same note', async () => {
      const r = await interrupted([], 'SIGTERM');
      assert.equal(r.code, 143, r.stderr);
      assert.match(r.stderr, /^pir: interrupted \(SIGTERM\)$/m);
      assert.match(r.stderr, new RegExp(`^pir: image ${r.id} was left without its data \\(queued, or saving until PIR notices the cut\\); delete it with pir image delete ${r.id}`, 'm'));
    });
  });
});
