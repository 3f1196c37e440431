/**
 * The catalog commands of `pir` against a `pir serve` started here (output in pipes): galleries,
 * create --gallery, list -q --gallery, history, metafile and register (the command line wins over
 * the metafile; registering again replaces, never merges), batch --metafile, exit codes.
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeTempDir, removeDir } from '../support/images.js';
import { runCli, type CliResult } from '../support/pir-cli.js';
import { freePort, startPirProcess, testLogDir, type PirProcess } from '../support/pir-process.js';

const TOKEN = 'e2e-cli-catalog-token-0123456789abcdef';
/** A member of another project than the admin's (register must not pick the admin's public image). */
const USER_TOKEN = 'e2e-cli-catalog-user-0123456789abcdef';
/** A third project, which user-project shares a gallery with. */
const OTHER_TOKEN = 'e2e-cli-catalog-other-0123456789abcdef';
const logDir = testLogDir('cli-catalog');

describe('pir gallery, pir image register/metafile/history against pir serve', () => {
  let dir: string;
  let pir: PirProcess;
  let cli: (args: string[]) => Promise<CliResult>;
  let userCli: (args: string[]) => Promise<CliResult>;
  let otherCli: (args: string[]) => Promise<CliResult>;
  let baseUrl: string;
  let disk: string;

  before(async () => {
    dir = await makeTempDir('pir-e2e-cli-catalog-');
    const home = join(dir, 'home');
    await mkdir(home);
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const tokensFile = join(dir, 'tokens.json');
    await writeFile(tokensFile, JSON.stringify({ tokens: [
      { token: USER_TOKEN, project_id: 'user-project', user_id: 'uma', roles: ['member', 'reader'] },
      { token: OTHER_TOKEN, project_id: 'other-project', user_id: 'otto', roles: ['member', 'reader'] },
    ] }), { mode: 0o600 });
    pir = await startPirProcess('serve', { PIR_DATA_DIR: join(dir, 'data'), PIR_PORT: String(port), PIR_ADMIN_TOKEN: TOKEN, PIR_TOKENS_FILE: tokensFile, PIR_REVISIONS_KEEP: '50' }, logDir, 'cli-catalog-serve');
    cli = (args) => runCli(args, { HOME: home, PIR_URL: url, PIR_TOKEN: TOKEN });
    userCli = (args) => runCli(args, { HOME: home, PIR_URL: url, PIR_TOKEN: USER_TOKEN });
    otherCli = (args) => runCli(args, { HOME: home, PIR_URL: url, PIR_TOKEN: OTHER_TOKEN });
    baseUrl = url;
    disk = join(dir, 'disk.raw');
    await writeFile(disk, Buffer.alloc(64 * 1024));
  });
  after(async () => {
    await pir?.stop();
    if (dir) await removeDir(dir);
  });

  const json = (r: CliResult) => JSON.parse(r.stdout);
  const ok = (r: CliResult) => { assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`); return r; };

  it('galleries: create a tree by path, show counts, rename, move, delete; unknown gallery is exit 4', async () => {
    ok(await cli(['gallery', 'create', 'linux']));
    ok(await cli(['gallery', 'create', 'debian', '--parent', 'linux']));
    const twelve = json(ok(await cli(['--format', 'json', 'gallery', 'create', '12', '--parent', 'linux/debian'])));
    assert.equal(twelve.path, 'linux/debian/12');
    const created = json(ok(await cli(['--format', 'json', 'image', 'create', '--name', 'bookworm nightly', '--disk-format', 'raw', '--file', disk, '--gallery', 'linux/debian/12', '--tag', 'nightly'])));
    assert.equal(created.status, 'active');
    assert.equal(created.pir_gallery_id, twelve.id);
    const listed = json(ok(await cli(['--format', 'json', 'image', 'list', '-q', 'bookw', '--gallery', 'linux', '--recursive'])));
    assert.deepEqual(listed.map((i: { id: string }) => i.id), [created.id]);
    assert.deepEqual(json(ok(await cli(['--format', 'json', 'image', 'list', '-q', 'bookw', '--gallery', 'linux']))), []);
    const shown = json(ok(await cli(['--format', 'json', 'gallery', 'show', 'linux', '--recursive'])));
    assert.deepEqual([shown.image_count, shown.gallery_count], [1, 2]);
    const table = ok(await cli(['gallery', 'list']));
    assert.match(table.stdout, /linux\/debian\/12/);
    ok(await cli(['gallery', 'rename', 'linux/debian', 'Debian']));
    ok(await cli(['gallery', 'move', 'linux/Debian/12']));
    assert.equal(json(ok(await cli(['--format', 'json', 'gallery', 'show', '12']))).path, '12');
    const notEmpty = await cli(['gallery', 'delete', '12']);
    assert.equal(notEmpty.code, 1, notEmpty.stderr);
    assert.match(notEmpty.stderr, /gallery_not_empty/);
    ok(await cli(['gallery', 'delete', 'linux/Debian']));
    const missing = await cli(['image', 'list', '--gallery', 'no/such']);
    assert.equal(missing.code, 4, missing.stderr);
    assert.match(missing.stderr, /no gallery 'no\/such'/);
  });

  it('metafile and register: the command line wins; registering again replaces; history is the revisions', async () => {
    ok(await cli(['gallery', 'create', 'meta']));
    const id = json(ok(await cli(['--format', 'json', 'image', 'create', '--name', 'source', '--disk-format', 'raw', '--file', disk, '--property', 'os_distro=debian', '--property', 'extra=1', '--tag', 'a', '--gallery', 'meta']))).id;
    const meta = ok(await cli(['image', 'metafile', id]));
    const metafile = join(dir, 'source.meta.json');
    await writeFile(metafile, meta.stdout);
    const parsed = JSON.parse(meta.stdout);
    assert.deepEqual({ name: parsed.name, tags: parsed.tags, properties: parsed.properties, gallery: parsed.gallery }, { name: 'source', tags: ['a'], properties: { os_distro: 'debian', extra: '1' }, gallery: 'meta' });

    // A new name: a new image, the metafile's metadata with the command line on top.
    const reg = json(ok(await cli(['--format', 'json', 'image', 'register', 'copy', '--metafile', metafile, '--property', 'os_distro=ubuntu'])));
    assert.notEqual(reg.id, id);
    assert.deepEqual([reg.name, reg.os_distro, reg.extra, reg.tags, reg.disk_format], ['copy', 'ubuntu', '1', ['a'], 'raw']);
    assert.ok(reg.pir_gallery_id);

    // Registering the same name again replaces: a property the new metafile lacks is removed.
    await writeFile(metafile, JSON.stringify({ ...parsed, name: 'copy', properties: { os_distro: 'fedora' }, tags: ['b'], gallery: null }));
    const again = json(ok(await cli(['--format', 'json', 'image', 'register', '--metafile', metafile])));
    assert.equal(again.id, reg.id);
    assert.deepEqual([again.os_distro, again.extra, again.tags, again.pir_gallery_id], ['fedora', undefined, ['b'], undefined]);

    const history = json(ok(await cli(['--format', 'json', 'image', 'history', reg.id])));
    assert.deepEqual(history.map((r: { action: string }) => r.action), ['create', 'gallery', 'update']);
    const last = history[history.length - 1];
    assert.deepEqual(last.patch.map((p: { op: string; path: string }) => `${p.op} ${p.path}`).sort(),
      ['remove /properties/extra', 'remove /properties/pir_gallery_id', 'replace /properties/os_distro', 'replace /tags']);
    const table = ok(await cli(['image', 'history', reg.id]));
    assert.match(table.stdout, /admin@admin/);
    const first = json(ok(await cli(['--format', 'json', 'image', 'history', reg.id, '--show', '1'])));
    assert.equal(first.metadata.properties.os_distro, 'ubuntu');
    const restored = json(ok(await cli(['--format', 'json', 'image', 'restore', reg.id, '2'])));
    assert.deepEqual([restored.os_distro, restored.extra], ['ubuntu', '1']);

    // A broken metafile is a usage error (exit 2).
    await writeFile(join(dir, 'bad.json'), '{"tags": "x"}');
    assert.equal((await cli(['image', 'register', 'x', '--metafile', join(dir, 'bad.json')])).code, 2);
    assert.equal((await cli(['image', 'register', 'x', '--metafile', join(dir, 'none.json')])).code, 2);
  });

  it('register without --image picks only an image of the caller\'s own project, never another project\'s public one', async () => {
    const golden = json(ok(await cli(['--format', 'json', 'image', 'create', '--name', 'golden', '--disk-format', 'raw', '--visibility', 'public', '--file', disk])));
    assert.equal(golden.visibility, 'public');
    // The user sees the admin's public "golden" in its list, but registers its own.
    const mine = json(ok(await userCli(['--format', 'json', 'image', 'register', 'golden', '--disk-format', 'qcow2', '--tag', 'mine'])));
    assert.notEqual(mine.id, golden.id);
    assert.equal(mine.owner, 'user-project');
    // Registering again finds the user's own one (its only one of that name), not the public one.
    const again = json(ok(await userCli(['--format', 'json', 'image', 'register', 'golden', '--disk-format', 'qcow2', '--tag', 'again'])));
    assert.equal(again.id, mine.id);
    assert.deepEqual(again.tags, ['again']);
    const untouched = json(ok(await cli(['--format', 'json', 'image', 'show', golden.id])));
    assert.deepEqual([untouched.tags, untouched.disk_format], [[], 'raw']);
  });

  it('batch --metafile: every image gets the metafile metadata and gallery', async () => {
    const batchDir = join(dir, 'batch');
    await mkdir(batchDir);
    await writeFile(join(batchDir, 'one.raw'), Buffer.alloc(32 * 1024, 1));
    await writeFile(join(batchDir, 'two.raw'), Buffer.alloc(32 * 1024, 2));
    ok(await cli(['gallery', 'create', 'batch']));
    const metafile = join(dir, 'batch.meta.json');
    await writeFile(metafile, JSON.stringify({ tags: ['from-meta'], properties: { os_distro: 'alpine' }, gallery: 'batch', visibility: 'private' }));
    ok(await cli(['image', 'batch', batchDir, '--metafile', metafile, '--property', 'os_distro=arch']));
    const images = json(ok(await cli(['--format', 'json', 'image', 'list', '--gallery', 'batch'])));
    assert.equal(images.length, 2);
    for (const image of images) assert.deepEqual([image.tags, image.os_distro, image.visibility], [['from-meta'], 'arch', 'private']);
  });
  it('a gallery shared with the project: list --shared, show/images/image list by id, read-only; a UUID-named gallery is never taken for another', async () => {
    const api = async (token: string, method: string, path: string, body?: unknown) => {
      const res = await fetch(baseUrl + path, { method, headers: { 'x-auth-token': token, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await res.text();
      assert.ok(res.ok, `${method} ${path}: ${res.status} ${text}`);
      return text ? JSON.parse(text) : null;
    };
    const ga = json(ok(await userCli(['--format', 'json', 'gallery', 'create', 'linux'])));
    ok(await userCli(['gallery', 'create', 'debian', '--parent', 'linux']));
    const image = json(ok(await userCli(['--format', 'json', 'image', 'create', '--name', 'shared-debian', '--disk-format', 'raw', '--file', disk, '--gallery', 'linux/debian'])));

    // Not shared yet: other-project cannot see it, by id or name.
    const unseen = await otherCli(['gallery', 'show', ga.id]);
    assert.equal(unseen.code, 4, unseen.stderr);
    assert.match(unseen.stderr, /a gallery shared with you is named by its id/);

    await api(USER_TOKEN, 'POST', `/v2/galleries/${ga.id}/members`, { member: 'other-project' });
    await api(OTHER_TOKEN, 'PUT', `/v2/galleries/${ga.id}/members/other-project`, { status: 'accepted' });

    const shared = json(ok(await otherCli(['--format', 'json', 'gallery', 'list', '--shared'])));
    assert.deepEqual(shared.map((g: { id: string; path: string; owner: string; member_status: string }) => [g.id, g.path, g.owner, g.member_status]), [[ga.id, 'linux', 'user-project', 'accepted']]);
    assert.match(ok(await otherCli(['gallery', 'list', '--shared'])).stdout, /accepted/);
    assert.deepEqual(json(ok(await otherCli(['--format', 'json', 'gallery', 'list']))), []);

    // Read commands by id: the API's answer, as for the owner.
    const shown = json(ok(await otherCli(['--format', 'json', 'gallery', 'show', ga.id, '--recursive'])));
    assert.deepEqual([shown.id, shown.path, shown.image_count, shown.gallery_count], [ga.id, 'linux', 1, 1]);
    assert.match(ok(await otherCli(['gallery', 'show', ga.id])).stdout, /linux\/debian/);
    const images = json(ok(await otherCli(['--format', 'json', 'gallery', 'images', ga.id, '--recursive'])));
    assert.deepEqual(images.map((i: { id: string }) => i.id), [image.id]);
    const listed = json(ok(await otherCli(['--format', 'json', 'image', 'list', '--gallery', ga.id, '--recursive'])));
    assert.deepEqual(listed.map((i: { id: string }) => i.id), [image.id]);
    assert.deepEqual(json(ok(await otherCli(['--format', 'json', 'image', 'list', '--gallery', `id:${ga.id}`]))), []);

    // A name or path is the caller's own project's.
    const byName = await otherCli(['gallery', 'images', 'linux']);
    assert.equal(byName.code, 4, byName.stderr);
    assert.match(byName.stderr, /no gallery 'linux' in your project; a gallery shared with you is named by its id/);

    // Read-only: the API's 403, said as such (exit 5); nothing is created in it.
    for (const args of [['gallery', 'rename', ga.id, 'mine'], ['gallery', 'delete', ga.id], ['gallery', 'move', ga.id]]) {
      const refused = await otherCli(args);
      assert.equal(refused.code, 5, `${args.join(' ')}: ${refused.stderr}`);
      assert.match(refused.stderr, new RegExp(`gallery 'linux' \\(${ga.id}\\) is project user-project's, shared with yours read-only: only its own project can ${args[1]} it \\(PIR answered 403`));
    }
    const intoShared = await otherCli(['image', 'create', '--name', 'sneaky', '--disk-format', 'raw', '--file', disk, '--gallery', ga.id]);
    assert.equal(intoShared.code, 5, intoShared.stderr);
    assert.match(intoShared.stderr, /is project user-project's, not yours/);
    const underShared = await otherCli(['gallery', 'create', 'sub', '--parent', ga.id]);
    assert.equal(underShared.code, 5, underShared.stderr);
    assert.deepEqual(json(ok(await otherCli(['--format', 'json', 'image', 'list', '-q', 'sneaky']))), []);
    assert.equal(json(ok(await userCli(['--format', 'json', 'gallery', 'show', ga.id]))).path, 'linux');

    // A gallery named with another's id: a bare UUID naming both is refused (exit 2); id: and / say which.
    const twin = json(ok(await otherCli(['--format', 'json', 'gallery', 'create', ga.id])));
    assert.equal(twin.path, ga.id);
    for (const args of [['gallery', 'delete', ga.id], ['gallery', 'show', ga.id], ['image', 'list', '--gallery', ga.id]]) {
      const ambiguous = await otherCli(args);
      assert.equal(ambiguous.code, 2, `${args.join(' ')}: ${ambiguous.stderr}`);
      assert.match(ambiguous.stderr, new RegExp(`names two galleries.*id:${ga.id}.*/${ga.id}`));
    }
    assert.equal(json(ok(await otherCli(['--format', 'json', 'gallery', 'show', `/${ga.id}`]))).id, twin.id);
    assert.equal(json(ok(await otherCli(['--format', 'json', 'gallery', 'show', `id:${ga.id}`]))).id, ga.id);
    assert.equal((await otherCli(['gallery', 'delete', `id:${ga.id}`])).code, 5);
    ok(await otherCli(['gallery', 'delete', `/${ga.id}`]));
    assert.equal(json(ok(await otherCli(['--format', 'json', 'gallery', 'show', ga.id]))).id, ga.id);
    // The owner's own UUID-named gallery is found by its path when no gallery has that id.
    const odd = '00000000-0000-4000-8000-000000000000';
    ok(await userCli(['gallery', 'create', odd]));
    ok(await userCli(['gallery', 'delete', odd]));
  });
});
