/** GroupFsync on a directory: one fsync serves every rename made before it began. */
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GroupFsync } from '../../../infra/storage/group-fsync.js';

describe('GroupFsync (a directory)', () => {
  let root: string;
  before(async () => { root = await mkdtemp(join(tmpdir(), 'pir-groupfsync-')); });
  after(async () => { await rm(root, { recursive: true, force: true }); });

  it('resolves every caller, with one fsync for all who asked while the one before ran', async () => {
    const dir = join(root, 'images');
    await mkdir(dir);
    const sync = new GroupFsync(dir);
    for (let i = 0; i < 20; i++) {
      await writeFile(join(root, `f${i}`), 'x');
      await rename(join(root, `f${i}`), join(dir, `f${i}`));
    }
    // The first call starts an fsync; the 19 made while it runs share the next one.
    await Promise.all(Array.from({ length: 20 }, () => sync.sync()));
    assert.equal(sync.syncs, 2);
  });

  it('gives a caller that comes while an fsync runs a later one of its own', async () => {
    const dir = join(root, 'later');
    await mkdir(dir);
    const sync = new GroupFsync(dir);
    const first = sync.sync(); // starts an fsync now
    const second = sync.sync(); // asked after it began: must not be answered by it
    await first;
    assert.equal(sync.syncs, 1);
    await second;
    assert.equal(sync.syncs, 2);
  });

  it('fails the callers of a failed fsync and works again once the directory is back', async () => {
    const dir = join(root, 'gone');
    const sync = new GroupFsync(dir);
    await assert.rejects(sync.sync(), { code: 'ENOENT' });
    await mkdir(dir);
    await sync.sync();
    assert.equal(sync.syncs, 1);
  });
});
