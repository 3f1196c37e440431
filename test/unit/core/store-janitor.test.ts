/**
 * Issue 6 point 8: a crash (or a failed removal) during DELETE leaves no bytes in the store for
 * ever: the store janitor removes bytes of no live image, after a grace period, and never those
 * of an image that owns them or is being promoted.
 */
import assert from 'node:assert/strict';
import { access, writeFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { newRun } from '../../../core/pipeline-state.js';
import { STORE_GRACE_MS, Sweepers } from '../../../workers/sweepers.js';
import { domain, silent } from './fixtures.js';

const settings = { stageDeadlineSeconds: 60, uploadStallSeconds: 30, maxResumes: 1, outboxGraceMs: 0 };
const exists = (path: string) => access(path).then(() => true, () => false);
const later = () => Date.now() + STORE_GRACE_MS + 60_000;

async function stored(d: Awaited<ReturnType<typeof domain>>, id: string, name = id): Promise<string> {
  const path = `${d.blobs.imagesDir}/${name}`;
  await writeFile(path, 'bytes');
  return path;
}

describe('store janitor', () => {
  it('removes the bytes a DELETE left behind when the process died after the manifest write', async () => {
    const d = await domain();
    const sweepers = new Sweepers(d.manifest, d.images, d.relay, d.blobs, settings, silent);
    const doc = await d.images.create({ project_id: 'p', user_id: 'u', roles: ['admin'] }, { name: 'to delete' });
    const path = await stored(d, doc.id);
    // The process "dies" right after the manifest write: the byte removals never run.
    const removeBytes = d.blobs.delete.bind(d.blobs);
    d.blobs.delete = async () => { throw new Error('killed before the bytes were removed'); };
    const left: unknown[] = [];
    await d.images.remove({ project_id: 'p', user_id: 'u', roles: ['admin'] }, doc.id, (e) => left.push(e));
    assert.equal(left.length, 1, 'the failed removal was reported, not thrown');
    assert.equal((await d.manifest.get(doc.id))?.status, 'deleted');
    assert.equal(await exists(path), true);
    d.blobs.delete = removeBytes;

    assert.equal(await sweepers.removeOrphanBytes(), 0, 'nothing within the grace period');
    assert.equal(await exists(path), true);
    assert.equal(await sweepers.removeOrphanBytes(later()), 1);
    assert.equal(await exists(path), false);
    await d.close();
  });

  it('removes bytes whose image document is gone, and half-made copies of settled images', async () => {
    const d = await domain();
    const sweepers = new Sweepers(d.manifest, d.images, d.relay, d.blobs, settings, silent);
    const unknown = await stored(d, '00000000-0000-4000-8000-00000000dead');
    const active = await d.images.create({ project_id: 'p', user_id: 'u', roles: ['admin'] }, { name: 'active' });
    await d.manifest.update(active.id, (draft) => { draft.status = 'active'; return []; });
    const activeBytes = await stored(d, active.id);
    const staleCopy = await stored(d, active.id, `${active.id}.partial-4242`);
    assert.equal(await sweepers.removeOrphanBytes(later()), 2);
    assert.equal(await exists(unknown), false);
    assert.equal(await exists(staleCopy), false);
    assert.equal(await exists(activeBytes), true, 'an active image keeps its bytes');
    await d.close();
  });

  it('never touches the bytes of an image being promoted, nor of one that may own bytes', async () => {
    const d = await domain();
    const sweepers = new Sweepers(d.manifest, d.images, d.relay, d.blobs, settings, silent);
    const importing = await d.images.create({ project_id: 'p', user_id: 'u', roles: ['admin'] }, { name: 'importing' });
    await d.manifest.update(importing.id, (draft) => {
      draft.status = 'importing';
      draft.pipeline = { ...newRun(1, 'upload', 60), stage: 'promote' };
      return [];
    });
    const promoted = await stored(d, importing.id);
    const copying = await stored(d, importing.id, `${importing.id}.partial-4242`);
    const deactivated = await d.images.create({ project_id: 'p', user_id: 'u', roles: ['admin'] }, { name: 'deactivated' });
    await d.manifest.update(deactivated.id, (draft) => { draft.status = 'active'; draft.status = 'deactivated'; return []; });
    const kept = await stored(d, deactivated.id);
    const queued = await d.images.create({ project_id: 'p', user_id: 'u', roles: ['admin'] }, { name: 're-created id' });
    const queuedBytes = await stored(d, queued.id);
    assert.equal(await sweepers.removeOrphanBytes(later()), 0);
    for (const path of [promoted, copying, kept, queuedBytes]) assert.equal(await exists(path), true, path);
    await d.close();
  });

  it('runs once after a restart of the embedded process', async () => {
    const d = await domain();
    const sweepers = new Sweepers(d.manifest, d.images, d.relay, d.blobs, settings, silent);
    const calls: number[] = [];
    sweepers.removeOrphanBytes = async (now = Date.now()) => { calls.push(now); return 0; };
    await sweepers.recoverAfterRestart();
    assert.equal(calls.length, 1);
    await d.close();
  });
});
