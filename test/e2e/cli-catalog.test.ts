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
const logDir = testLogDir('cli-catalog');

describe('pir gallery, pir image register/metafile/history against pir serve', () => {
  let dir: string;
  let pir: PirProcess;
  let cli: (args: string[]) => Promise<CliResult>;
  let disk: string;

  before(async () => {
    dir = await makeTempDir('pir-e2e-cli-catalog-');
    const home = join(dir, 'home');
    await mkdir(home);
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    pir = await startPirProcess('serve', { PIR_DATA_DIR: join(dir, 'data'), PIR_PORT: String(port), PIR_ADMIN_TOKEN: TOKEN, PIR_REVISIONS_KEEP: '50' }, logDir, 'cli-catalog-serve');
    cli = (args) => runCli(args, { HOME: home, PIR_URL: url, PIR_TOKEN: TOKEN });
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
});
