/**
 * The image entity owns the lifecycle: no other module sets an image's status, and every path
 * to `active` (the stage runner's and the sweeper's) emits image.active.
 */
import assert from 'node:assert/strict';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { Caller } from '../../../core/caller.js';
import { abortReceiving, activate, deactivate, kill, markDeleted, reactivate } from '../../../core/image-entity.js';
import type { ImageDoc } from '../../../schemas/image.js';
import { Sweepers } from '../../../workers/sweepers.js';
import { P, domain, silent } from './fixtures.js';

const ROOT = new URL('../../../../', import.meta.url).pathname;

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(join(ROOT, dir), { withFileTypes: true })) {
    const rel = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...await sourceFiles(rel));
    else if (entry.name.endsWith('.ts')) out.push(rel);
  }
  return out;
}

describe('the image entity', () => {
  it('is the only module that sets an image status', async () => {
    const offenders: string[] = [];
    for (const dir of ['api', 'core', 'ingest', 'workers', 'infra']) {
      for (const file of await sourceFiles(dir)) {
        if (file === join('core', 'image-entity.ts')) continue;
        const text = await readFile(join(ROOT, file), 'utf8');
        // draft.status = …, doc.status = … (not a stage's or a member's progress status)
        for (const m of text.matchAll(/\b(draft|doc|image|current)\.status\s*=[^=]/g)) offenders.push(`${file}: ${m[0]}`);
        if (/\btransition\(/.test(text)) offenders.push(`${file}: transition(`);
      }
    }
    assert.deepEqual(offenders, []);
  });

  it('pairs each status change with its event, and refuses moves Glance refuses', () => {
    const doc = { id: 'i', status: 'active', protected: false, size: 1, virtual_size: 1, checksum: 'c', os_hash_algo: 'sha512', os_hash_value: 'h', pipeline: null, upload: null, staging: null } as unknown as ImageDoc;
    assert.deepEqual(deactivate(doc)!.map((e) => e.type), ['image.deactivated']);
    assert.equal(deactivate(doc), null, 'deactivating twice is a no-op');
    assert.deepEqual(reactivate(doc)!.map((e) => e.type), ['image.reactivated']);
    assert.throws(() => activate({ ...doc, status: 'killed' } as ImageDoc, 1), /cannot become active/);
    assert.throws(() => reactivate({ ...doc, status: 'queued' } as ImageDoc), /only a deactivated image/);
    assert.throws(() => markDeleted({ ...doc, protected: true } as ImageDoc), /protected/);
    assert.throws(() => kill({ ...doc } as ImageDoc, 'inspect', 'x', 'y'), /cannot become killed/);
  });

  it('moves the stores a killed import was still importing to into its failed stores, as Glance', () => {
    const doc = { id: 'i', status: 'importing', pipeline: null, upload: null, staging: null, store_import: { importing: ['fast', 's3'], failed: ['s3', 'old'], must_succeed: false } } as unknown as ImageDoc;
    assert.deepEqual(kill(doc, 'inspect', 'qcow2_backing_file', 'refused').map((e) => e.type), ['image.killed']);
    assert.equal(doc.status, 'killed');
    assert.deepEqual(doc.store_import, { importing: [], failed: ['s3', 'old', 'fast'], must_succeed: false });
    const plain = { id: 'j', status: 'importing', pipeline: null, upload: null, staging: null } as unknown as ImageDoc;
    kill(plain, 'inspect', 'x', 'y');
    assert.equal(plain.store_import, undefined, 'an import without named stores gets no store lists');
  });

  it("ends a legacy import task's cut download as a failed task (killed, import_interrupted), where an interoperable web-download goes back to queued", () => {
    const receiving = (extra: Partial<ImageDoc>) => ({ id: 'i', status: 'uploading', pipeline: null, staging: null, upload: { run: 1, kind: 'web-download' }, ...extra }) as unknown as ImageDoc;
    const legacy = receiving({ import_task: { input: { import_from: 'http://mirror.invalid/x', import_from_format: 'raw', image_properties: {} } } as ImageDoc['import_task'] });
    assert.deepEqual(abortReceiving(legacy, 'PIR restarted while the data was arriving').map((e) => e.type), ['image.killed']);
    assert.deepEqual([legacy.status, legacy.failure?.code, legacy.failure?.run, legacy.upload], ['killed', 'import_interrupted', 1, null]);
    assert.match(legacy.failure!.message, /PIR restarted while the data was arriving.*create the task again/);
    const interoperable = receiving({});
    assert.deepEqual(abortReceiving(interoperable, 'PIR restarted').map((e) => e.type), ['image.upload.aborted']);
    assert.equal(interoperable.status, 'queued');
  });

  it("ends an import call's cut web-download or glance-download as a failed task (import_interrupted), back in queued to import again", () => {
    for (const kind of ['web-download', 'glance-download'] as const) {
      const input = { image_id: 'i', import_req: { method: { name: kind } }, backend: [null] } as unknown as NonNullable<ImageDoc['upload']>['input'];
      const doc = { id: 'i', status: 'uploading', pipeline: null, staging: null, upload: { run: 3, kind, started_at: 't', input, requested: { user_id: 'u', request_id: 'req-1' } } } as unknown as ImageDoc;
      assert.deepEqual(abortReceiving(doc, 'PIR restarted while the data was arriving').map((e) => e.type), ['image.upload.aborted']);
      assert.deepEqual([doc.status, doc.upload, doc.failure?.code, doc.failure?.run, doc.failure?.method], ['queued', null, 'import_interrupted', 3, kind]);
      assert.deepEqual(doc.failure?.requested, { user_id: 'u', request_id: 'req-1', input });
      assert.equal(doc.failure?.message, `The ${kind} stopped before its last byte (PIR restarted while the data was arriving); import again.`);
    }
  });

  it("finishes through the sweeper with image.active when a run's stages were all done (it used to skip the event)", async () => {
    const d = await domain();
    const image = await d.images.create(P, { name: 'n', disk_format: 'raw', container_format: 'bare' });
    const ticket = await d.images.beginUpload(P, image.id, 'upload');
    await writeFile(d.blobs.pathOf(ticket.stagingKey), 'data');
    await d.images.completeUpload(P, image.id, ticket.run, { key: ticket.stagingKey, size: 4, md5: 'm', sha512: 's' });
    // A worker recorded the last stage, then died before the write that makes the image active.
    await d.manifest.update(image.id, (draft) => {
      draft.pipeline!.stage = 'done';
      Object.assign(draft, { size: 4, virtual_size: 4, checksum: 'm', os_hash_algo: 'sha512', os_hash_value: 's' });
      return [];
    });
    const sweepers = new Sweepers(d.manifest, d.images, d.relay, d.blobs, { stageDeadlineSeconds: 60, uploadStallSeconds: 30, maxResumes: 3, outboxGraceMs: 0 }, silent);
    await sweepers.sweepStale(Date.now() + 61_000);
    assert.equal((await d.manifest.get(image.id))!.status, 'active');
    await d.relay.drain();
    const active = d.published.filter((e) => e.image_id === image.id && e.type === 'image.active');
    assert.equal(active.length, 1);
    assert.equal((active[0].data as { size: number }).size, 4);
    await d.close();
  });

  it('authorizes every service call by the caller it is given', async () => {
    const d = await domain();
    const other: Caller = { project_id: 'q', user_id: 'v', roles: ['member'] };
    const image = await d.images.create(P, { name: 'n', visibility: 'private' });
    await assert.rejects(d.images.get(other, image.id), /not found/);
    await assert.rejects(d.images.beginUpload(other, image.id, 'upload'), /not found/);
    await assert.rejects(d.images.remove(other, image.id), /not found/);
    await assert.rejects(d.images.importStaged(other, image.id), /not found/);
    await d.close();
  });
});
