/**
 * Multi-store operations over two filesystem stores (core/store-operations.ts): the copy-image
 * job (copy, verify against os_hash_value, record; a mismatch retried, then listed as failed),
 * DELETE from a store (never the last copy), and the store janitor on the non-default store.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { access, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { imageView } from '../../../api/glance-view.js';
import { ImageService } from '../../../core/image-service.js';
import { PirError } from '../../../core/errors.js';
import { COPY_IMAGE_KIND, StoreOperations, startsCopies, type CopyImageJob } from '../../../core/store-operations.js';
import { StoreRegistry } from '../../../core/store-registry.js';
import { FsBlobStore } from '../../../infra/storage/fs-blob-store.js';
import { STORE_GRACE_MS, Sweepers } from '../../../workers/sweepers.js';
import { domain, silent } from '../core/fixtures.js';

const ADMIN = { project_id: 'admin', user_id: 'root', roles: ['admin'] };
const OWNER = { project_id: 'p', user_id: 'u', roles: ['member'] };
const BYTES = Buffer.from('a disk image, or at least its bytes\n'.repeat(100));
const SHA512 = createHash('sha512').update(BYTES).digest('hex');
const exists = (path: string) => access(path).then(() => true, () => false);
const ctx = (attempt: number) => ({ attempt, maxAttempts: COPY_IMAGE_KIND.retry.attempts, reportProgress: async () => {} });

async function setup() {
  const d = await domain();
  const other = new FsBlobStore(await mkdtemp(join(tmpdir(), 'pir-unit-store-')));
  await other.init();
  const broken = new FsBlobStore(await mkdtemp(join(tmpdir(), 'pir-unit-store-')));
  await broken.init();
  // `broken` refuses every write: its images directory is a file.
  await rm(broken.imagesDir, { recursive: true });
  await writeFile(broken.imagesDir, 'not a directory');
  const stores = new StoreRegistry([
    { id: 'fast', description: 'f', blobs: d.blobs, properties: {} },
    { id: 'cheap', description: 'c', blobs: other, properties: {} },
    { id: 'broken', description: 'b', blobs: broken, properties: {} },
  ], 'fast', true);
  const images = new ImageService(d.manifest, d.blobs, { stageDeadlineSeconds: 60, stores });
  const jobs: { id: string; data: CopyImageJob }[] = [];
  const ops = new StoreOperations(d.manifest, stores, { enqueue: async (_kind, id, data) => { jobs.push({ id, data: data as CopyImageJob }); } }, silent);
  /** An active image of project p whose bytes are in the default store. */
  const activeImage = async (hash = SHA512) => {
    const doc = await images.create(OWNER, { name: 'x' });
    await writeFile(join(d.blobs.imagesDir, doc.id), BYTES);
    await d.manifest.update(doc.id, (draft) => { Object.assign(draft, { status: 'active', size: BYTES.length, os_hash_algo: 'sha512', os_hash_value: hash }); return []; });
    return doc.id;
  };
  return { d, other, stores, images, ops, jobs, activeImage };
}

describe('copy-image', () => {
  it('copies into the store, verified, and records it; only admins; 400 once it is there, as Glance', async () => {
    const { d, other, ops, jobs, activeImage } = await setup();
    const id = await activeImage();
    await assert.rejects(ops.copyImage(OWNER, id, ['cheap'], true), (e: PirError) => e.code === 'policy_denied');
    await assert.rejects(ops.copyImage({ ...OWNER, project_id: 'q' }, id, ['cheap'], true), (e: PirError) => e.code === 'not_found');
    // Glance: "Image is already present at store 'fast'" (400), though cheap does not hold it.
    await assert.rejects(ops.copyImage(ADMIN, id, ['cheap', 'fast'], true),
      (e: PirError) => e.code === 'already_in_stores' && e.kind === 'bad_request' && /already present at store 'fast'/.test(e.message));
    assert.equal((await d.manifest.get(id))!.store_import, undefined, 'nothing recorded');
    assert.deepEqual(await ops.copyImage(ADMIN, id, ['cheap'], true), ['cheap']);
    assert.deepEqual((await d.manifest.get(id))!.store_import, { importing: ['cheap'], failed: [], must_succeed: true, copied: [], task: 1 });
    assert.equal(jobs.length, 1);
    await assert.rejects(ops.copyImage(ADMIN, id, ['cheap'], true), (e: PirError) => e.code === 'import_in_progress', 'being copied: the import lock');
    await ops.handle(jobs[0].data, ctx(1));
    const doc = (await d.manifest.get(id))!;
    assert.deepEqual(doc.stores!.map((c) => c.store), ['fast', 'cheap']);
    assert.deepEqual(doc.store_import, { importing: [], failed: [], must_succeed: true, copied: ['cheap'], task: 1 });
    assert.deepEqual(await readFile(join(other.imagesDir, id)), BYTES);
    await assert.rejects(ops.copyImage(ADMIN, id, ['cheap'], true), (e: PirError) => e.code === 'already_in_stores' && e.kind === 'bad_request');
    await d.close();
  });

  it('all_stores copies only into the stores that lack the image, and does nothing (no error, no event) when every store holds it, as Glance', async () => {
    const { d, ops, jobs, activeImage } = await setup();
    const id = await activeImage();
    assert.deepEqual(await ops.copyImage(ADMIN, id, ['fast', 'cheap'], true, true), ['cheap'], 'the default store already holds it');
    await ops.handle(jobs[0].data, ctx(1));
    const before = (await d.manifest.get(id))!;
    assert.deepEqual(await ops.copyImage(ADMIN, id, ['fast', 'cheap'], true, true), []);
    const after = (await d.manifest.get(id))!;
    assert.deepEqual(after, before, 'the image is left as it was');
    assert.equal(jobs.length, 1, 'no job');
    await assert.rejects(ops.copyImage(OWNER, id, ['fast', 'cheap'], true, true), (e: PirError) => e.code === 'policy_denied', 'policy first');
    await d.close();
  });

  it('a copy that does not match os_hash_value is removed and retried; after the last attempt the store is listed as failed', async () => {
    const { d, other, ops, jobs, activeImage } = await setup();
    const id = await activeImage('0'.repeat(128));
    await ops.copyImage(ADMIN, id, ['cheap'], false);
    await assert.rejects(ops.handle(jobs[0].data, ctx(1)), (e: PirError) => e.code === 'store_copy_mismatch');
    assert.equal(await exists(join(other.imagesDir, id)), false, 'the bad copy is gone');
    assert.deepEqual((await d.manifest.get(id))!.store_import!.importing, ['cheap'], 'still importing while retries remain');
    await ops.handle(jobs[0].data, ctx(COPY_IMAGE_KIND.retry.attempts));
    const doc = (await d.manifest.get(id))!;
    assert.deepEqual(doc.store_import, { importing: [], failed: ['cheap'], must_succeed: false, copied: [], task: 1 });
    assert.deepEqual(doc.stores!.map((c) => c.store), ['fast']);
    // As Glance: a lenient copy-image leaves the image active, so its task succeeds (the store is listed as failed).
    assert.deepEqual(doc.copy_tasks!.map((t) => [t.run, t.status, t.message]), [[1, 'success', '']]);
    await d.close();
  });

  it('a copy the queue gave up (its workers died) lists the store as failed, so a new copy-image can be asked for', async () => {
    const { d, ops, jobs, activeImage } = await setup();
    const id = await activeImage();
    await ops.copyImage(ADMIN, id, ['cheap'], false);
    await ops.abandoned(jobs[0].data);
    const doc = (await d.manifest.get(id))!;
    assert.deepEqual(doc.store_import, { importing: [], failed: ['cheap'], must_succeed: false, copied: [], task: 1 });
    assert.equal(doc.copy_tasks![0].status, 'success', 'its task is settled, not left processing');
    assert.deepEqual(await ops.copyImage(ADMIN, id, ['cheap'], false), ['cheap'], 'no longer 409 import_in_progress');
    // One that had to succeed: given up, its task fails.
    const strict = await activeImage();
    await ops.copyImage(ADMIN, strict, ['cheap'], true);
    await ops.abandoned(jobs[jobs.length - 1].data);
    const [task] = (await d.manifest.get(strict))!.copy_tasks!;
    assert.equal(task.status, 'failure');
    assert.match(task.message, /copy to store 'cheap' failed for good/);
    await ops.abandoned({ image_id: 'no-such-image', store: 'cheap' });
    await d.close();
  });

  it('all_stores_must_succeed: a store failing for good removes the copies this copy-image made (Glance reverts the task)', async () => {
    const { d, other, ops, jobs, activeImage } = await setup();
    const id = await activeImage();
    assert.deepEqual(await ops.copyImage(ADMIN, id, ['cheap', 'broken'], true), ['cheap', 'broken']);
    await ops.handle(jobs[0].data, ctx(1));
    assert.deepEqual((await d.manifest.get(id))!.stores!.map((c) => c.store), ['fast', 'cheap'], 'cheap is copied');
    await assert.rejects(ops.handle(jobs[1].data, ctx(1)));
    await ops.handle(jobs[1].data, ctx(COPY_IMAGE_KIND.retry.attempts));
    const doc = (await d.manifest.get(id))!;
    assert.deepEqual(doc.stores!.map((c) => c.store), ['fast'], 'the image is left as it was');
    assert.deepEqual(doc.store_import, { importing: [], failed: ['broken'], must_succeed: true, copied: [], task: 1 });
    assert.deepEqual(doc.copy_tasks!.map((t) => [t.status, t.message]),
      [['failure', "copy to store 'broken' failed for good; all_stores_must_succeed is true, so the copy-image stopped and removed the copies it made (cheap)."]]);
    assert.equal(await exists(join(other.imagesDir, id)), false, "cheap's copy is removed");
    assert.deepEqual(await readFile(join(d.blobs.imagesDir, id)), BYTES, 'the copy from before stays');
    await d.close();
  });

  it('all_stores_must_succeed: false keeps the copies that worked and lists the store that failed', async () => {
    const { d, other, ops, jobs, activeImage } = await setup();
    const id = await activeImage();
    await ops.copyImage(ADMIN, id, ['broken', 'cheap'], false);
    await ops.handle(jobs[0].data, ctx(COPY_IMAGE_KIND.retry.attempts));
    await ops.handle(jobs[1].data, ctx(1));
    const doc = (await d.manifest.get(id))!;
    assert.deepEqual(doc.stores!.map((c) => c.store), ['fast', 'cheap']);
    assert.deepEqual(doc.store_import, { importing: [], failed: ['broken'], must_succeed: false, copied: ['cheap'], task: 1 });
    assert.equal(doc.copy_tasks![0].status, 'success', 'as Glance: the image is still active');
    assert.deepEqual(await readFile(join(other.imagesDir, id)), BYTES);
    await d.close();
  });

  it('a copy-image while another is running is 409 import_in_progress (one placement at a time, as Glance\'s import lock)', async () => {
    const { d, ops, activeImage } = await setup();
    const id = await activeImage();
    await ops.copyImage(ADMIN, id, ['cheap'], true);
    await assert.rejects(ops.copyImage(ADMIN, id, ['broken'], true), (e: PirError) => e.code === 'import_in_progress');
    assert.deepEqual((await d.manifest.get(id))!.store_import!.importing, ['cheap']);
    await d.close();
  });

  it('a copy-image is recorded with an event that enqueues the same jobs again (a crash after the record loses no copy)', async () => {
    const { d, ops, jobs, activeImage } = await setup();
    const id = await activeImage();
    await ops.copyImage(ADMIN, id, ['cheap'], true);
    // The event as the bus delivers it (published by the outbox relay).
    const find = () => d.published.find((e) => e.image_id === id && e.type === 'image.updated');
    for (let waited = 0; !find() && waited < 10_000; waited += 20) await new Promise((r) => setTimeout(r, 20));
    const recorded = find()!;
    assert.ok(startsCopies(recorded), 'the dispatcher acts on it');
    assert.deepEqual(recorded.data, { changes: ['os_glance_importing_to_stores'] });
    await ops.continueImport(id, recorded.id);
    assert.deepEqual(jobs.map((j) => j.id), [`${id}.copy.cheap.${recorded.id}`, `${id}.copy.cheap.${recorded.id}`], 'one job id: the queue keeps one');
    await d.close();
  });

  it('continueImport: one job per store a lenient import left, with ids an event repeated twice cannot double', async () => {
    const { d, ops, jobs, activeImage } = await setup();
    const id = await activeImage();
    await d.manifest.update(id, (draft) => { draft.store_import = { importing: ['cheap'], failed: ['broken'], must_succeed: false }; return []; });
    assert.deepEqual(await ops.continueImport(id, 'e1'), ['cheap']);
    assert.deepEqual(jobs.map((j) => j.id), [`${id}.copy.cheap.e1`]);
    await ops.handle(jobs[0].data, ctx(1));
    const doc = (await d.manifest.get(id))!;
    assert.deepEqual(doc.stores!.map((c) => c.store), ['fast', 'cheap']);
    assert.deepEqual(doc.store_import, { importing: [], failed: ['broken'], must_succeed: false });
    assert.deepEqual(await ops.continueImport(id, 'e1'), [], 'nothing left to place');
    await d.close();
  });

  it("records its task in the write that starts it (Glance's api_image_import: import_req, backend, who asked), processing until the last store is done", async () => {
    const { d, ops, jobs, activeImage } = await setup();
    const id = await activeImage();
    const importReq = { method: { name: 'copy-image' }, all_stores: true };
    await ops.copyImage({ ...ADMIN, request_id: 'req-1' }, id, ['fast', 'cheap', 'broken'], false, true, importReq);
    const started = (await d.manifest.get(id))!;
    assert.equal(started.store_import!.task, 1);
    const [task] = started.copy_tasks!;
    assert.deepEqual([task.run, task.status, task.requested], [1, 'processing', { user_id: 'root', request_id: 'req-1', input: { import_req: importReq, backend: ['cheap', 'broken'] } }]);
    await ops.handle(jobs[0].data, ctx(1));
    assert.equal((await d.manifest.get(id))!.copy_tasks![0].status, 'processing', 'broken is still being copied');
    await ops.handle(jobs[1].data, ctx(COPY_IMAGE_KIND.retry.attempts));
    assert.equal((await d.manifest.get(id))!.copy_tasks![0].status, 'success');
    // Every store holds it or failed: all_stores with nothing left to copy makes no task, as Glance returns before its task.
    await d.manifest.update(id, (draft) => { draft.store_import!.failed = []; return []; });
    await ops.copyImage(ADMIN, id, ['fast', 'cheap'], false, true);
    assert.equal((await d.manifest.get(id))!.copy_tasks!.length, 1);
    await d.close();
  });

  it("a late duplicate of an earlier copy-image's job leaves the next copy-image of that store alone", async () => {
    const { d, ops, jobs, activeImage } = await setup();
    const id = await activeImage();
    await ops.copyImage(ADMIN, id, ['broken'], true);
    const stale = jobs[0].data;
    assert.equal(stale.task, 1, 'the job names its copy-image');
    await ops.handle(stale, ctx(COPY_IMAGE_KIND.retry.attempts));
    assert.equal((await d.manifest.get(id))!.copy_tasks![0].status, 'failure');
    await ops.copyImage(ADMIN, id, ['broken'], true);
    // The first copy's job runs again (the queue delivered it twice): it is not this copy's.
    await ops.handle(stale, ctx(COPY_IMAGE_KIND.retry.attempts));
    await ops.abandoned(stale);
    const doc = (await d.manifest.get(id))!;
    assert.deepEqual(doc.store_import!.importing, ['broken'], 'still being copied');
    assert.deepEqual(doc.copy_tasks!.map((t) => [t.run, t.status]), [[1, 'failure'], [2, 'processing']]);
    await d.close();
  });

  it('keeps its newest copy tasks, never dropping one still running', async () => {
    const { d, ops, jobs, activeImage } = await setup();
    const id = await activeImage();
    for (let i = 0; i < 25; i++) {
      await ops.copyImage(ADMIN, id, ['broken'], false);
      await ops.abandoned(jobs[jobs.length - 1].data);
    }
    const runs = (await d.manifest.get(id))!.copy_tasks!.map((t) => t.run);
    assert.equal(runs.length, 20);
    assert.deepEqual([runs[0], runs[19]], [6, 25]);
    await d.close();
  });

  it('an image deleted while its copy was written keeps no copy', async () => {
    const { d, other, images, ops, jobs, activeImage } = await setup();
    const id = await activeImage();
    await ops.copyImage(ADMIN, id, ['cheap'], true);
    await images.remove(OWNER, id);
    await ops.handle(jobs[0].data, ctx(1));
    assert.equal(await exists(join(other.imagesDir, id)), false);
    await d.close();
  });
});

describe('imports that name no store (multi-store)', () => {
  const formats = { name: 'x', disk_format: 'raw', container_format: 'bare' } as const;
  it('web-download: the default store is listed as importing, and as failed when the download fails (as Glance)', async () => {
    const { d, images } = await setup();
    const { id } = await images.create(OWNER, formats);
    const importReq = { method: { name: 'web-download', uri: 'http://x/y' } };
    const ticket = await images.beginWebDownload(OWNER, id, undefined, importReq);
    assert.deepEqual((await d.manifest.get(id))!.store_import, { importing: ['fast'], failed: [], must_succeed: true });
    await images.failWebDownload(OWNER, id, ticket.run, 'upstream_status', '404');
    const doc = (await d.manifest.get(id))!;
    assert.deepEqual(doc.store_import, { importing: [], failed: ['fast'], must_succeed: true });
    // The task's input names the store as Glance's backend.
    assert.deepEqual(doc.failure!.requested!.input, { import_req: importReq, backend: ['fast'] });
    await d.close();
  });

  it('glance-direct: the default store, unless PUT …/stage named one with X-Image-Meta-Store', async () => {
    const { d, images } = await setup();
    for (const [header, expected] of [[undefined, 'fast'], ['cheap', 'cheap']] as const) {
      const { id } = await images.create(OWNER, formats);
      const ticket = await images.beginUpload(OWNER, id, 'stage', header ? { stores: [header], must_succeed: true } : undefined);
      await images.completeUpload(OWNER, id, ticket.run, { key: ticket.stagingKey, size: 4, md5: 'm', sha512: 's' });
      await images.importStaged(OWNER, id);
      assert.deepEqual((await d.manifest.get(id))!.store_import, { importing: [expected], failed: [], must_succeed: true });
    }
    await d.close();
  });
});

describe('the image view of an import\'s stores', () => {
  it('os_glance_importing_to_stores and os_glance_failed_import are sorted, as Glance\'s merge_store_list', async () => {
    const { d, images } = await setup();
    const { id } = await images.create(OWNER, { name: 'x' });
    const { doc } = await d.manifest.update(id, (draft) => { draft.store_import = { importing: ['fast', 'cheap'], failed: ['cheap', 'broken'], must_succeed: false }; return []; });
    const view = imageView(doc);
    assert.deepEqual([view.os_glance_importing_to_stores, view.os_glance_failed_import], ['cheap,fast', 'broken,cheap']);
    assert.deepEqual(doc.store_import!.importing, ['fast', 'cheap'], 'the placement order is kept');
    await d.close();
  });
});

describe('DELETE /v2/stores/{store}/{image}', () => {
  it('removes one copy, never the last; unknown store 409 (as Glance), not in the store 404; admins only', async () => {
    const { d, other, ops, jobs, activeImage } = await setup();
    const id = await activeImage();
    await assert.rejects(ops.deleteFromStore(ADMIN, id, 'cheap'), (e: PirError) => e.code === 'image_not_in_store');
    await assert.rejects(ops.deleteFromStore(ADMIN, id, 'fast'), (e: PirError) => e.code === 'last_store');
    await assert.rejects(ops.deleteFromStore(ADMIN, id, 'nope'), (e: PirError) => e.code === 'store_unavailable' && e.kind === 'conflict' && /not available on this node/.test(e.message));
    await assert.rejects(ops.deleteFromStore(OWNER, 'no-such-image', 'nope'), (e: PirError) => e.code === 'store_unavailable', 'the store is checked first');
    await ops.copyImage(ADMIN, id, ['cheap'], true);
    await ops.handle(jobs[0].data, ctx(1));
    await assert.rejects(ops.deleteFromStore(OWNER, id, 'fast'), (e: PirError) => e.code === 'policy_denied');
    await ops.deleteFromStore(ADMIN, id, 'fast');
    assert.equal(await exists(join(d.blobs.imagesDir, id)), false);
    assert.deepEqual((await d.manifest.get(id))!.stores!.map((c) => c.store), ['cheap']);
    await assert.rejects(ops.deleteFromStore(ADMIN, id, 'cheap'), (e: PirError) => e.code === 'last_store');
    assert.equal(await exists(join(other.imagesDir, id)), true);
    await d.close();
  });

  it('a copy in a store no longer configured is not a copy left', async () => {
    const { d, ops, activeImage } = await setup();
    const id = await activeImage();
    // Recorded in 'retired' (dropped from PIR_STORES since) and in the default store.
    await d.manifest.update(id, (draft) => { draft.stores = [{ store: 'fast', key: `images/${id}`, at: new Date().toISOString() }, { store: 'retired', key: `images/${id}`, at: new Date().toISOString() }]; return []; });
    await assert.rejects(ops.deleteFromStore(ADMIN, id, 'fast'), (e: PirError) => e.code === 'last_store' && /that PIR can read/.test(e.message));
    assert.equal(await exists(join(d.blobs.imagesDir, id)), true, 'the readable copy is kept');
    await d.close();
  });
});

describe('store janitor, other stores', () => {
  it('removes copies no image records, keeps recorded ones and those being copied', async () => {
    const { d, other, images, ops, jobs, activeImage } = await setup();
    const settings = { stageDeadlineSeconds: 60, uploadStallSeconds: 30, maxResumes: 1, outboxGraceMs: 0 };
    const sweepers = new Sweepers(d.manifest, images, d.relay, d.blobs, settings, silent);
    const recorded = await activeImage();
    await ops.copyImage(ADMIN, recorded, ['cheap'], true);
    await ops.handle(jobs[0].data, ctx(1));
    const copying = await activeImage();
    await ops.copyImage(ADMIN, copying, ['cheap'], true);
    await writeFile(join(other.imagesDir, copying), 'half');
    const stray = await activeImage();
    await writeFile(join(other.imagesDir, stray), BYTES);
    await writeFile(join(other.imagesDir, '00000000-0000-4000-8000-00000000dead'), BYTES);
    const later = Date.now() + STORE_GRACE_MS + 60_000;
    assert.equal(await sweepers.removeOrphanBytes(Date.now()), 0, 'nothing within the grace period');
    assert.equal(await sweepers.removeOrphanBytes(later), 2);
    assert.equal(await exists(join(other.imagesDir, recorded)), true);
    assert.equal(await exists(join(other.imagesDir, copying)), true);
    assert.equal(await exists(join(other.imagesDir, stray)), false);
    assert.equal(await exists(join(d.blobs.imagesDir, stray)), true, "the default store's copy stays");
    await d.close();
  });
});
