import assert from 'node:assert/strict';
import { access, writeFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { RefusedError, TransientError } from '../../../core/errors.js';
import type { JobContext, StageJob } from '../../../core/ports.js';
import type { StageName } from '../../../schemas/image.js';
import { StageRunner, type StageWork } from '../../../workers/stage-runner.js';
import { Sweepers } from '../../../workers/sweepers.js';
import { P, domain, silent } from './fixtures.js';

const ctx = (attempt: number, maxAttempts = 3): JobContext => ({ attempt, maxAttempts, reportProgress: async () => {} });
const noop: StageWork = async () => () => {};

async function importingImage(d: Awaited<ReturnType<typeof domain>>) {
  const image = await d.images.create(P, { name: 'n', disk_format: 'raw', container_format: 'bare' });
  const ticket = await d.images.beginUpload(P, image.id, 'upload');
  await writeFile(d.blobs.pathOf(ticket.stagingKey), 'data');
  const blob = { key: ticket.stagingKey, size: 4, md5: 'm', sha512: 's' };
  await d.images.completeUpload(P, image.id, ticket.run, blob);
  return { id: image.id, run: ticket.run };
}

function runner(d: Awaited<ReturnType<typeof domain>>, overrides: Partial<Record<StageName, StageWork>> = {}) {
  const stages: Record<StageName, StageWork> = {
    unpack: async (doc) => (draft) => { draft.pipeline!.unpacked = { ...doc.staging! }; },
    inspect: async () => (draft) => { draft.virtual_size = 4; },
    checksum: async (doc) => (draft) => { draft.size = 4; draft.checksum = doc.staging!.md5; draft.os_hash_algo = 'sha512'; draft.os_hash_value = doc.staging!.sha512; },
    promote: noop,
    ...overrides,
  };
  return new StageRunner(d.manifest, d.blobs, stages, { stageDeadlineSeconds: 60 }, silent);
}

const job = (id: string, run: number, stage: StageName): StageJob => ({ imageId: id, run, stage });

describe('StageRunner', () => {
  it('walks the stages to active, recording timings and events', async () => {
    const d = await domain();
    const { id, run } = await importingImage(d);
    const r = runner(d);
    for (const stage of ['unpack', 'inspect', 'checksum', 'promote'] as const) await r.handle(job(id, run, stage), ctx(1));
    const doc = (await d.manifest.get(id))!;
    assert.equal(doc.status, 'active');
    assert.equal(doc.pipeline!.stage, 'done');
    assert.ok(Object.values(doc.pipeline!.stages).every((s) => s.status === 'done' && s.duration_ms !== null));
    await d.relay.drain();
    const types = d.published.filter((e) => e.image_id === id).map((e) => e.type);
    assert.deepEqual(types.slice(-3), ['image.stage.started', 'image.stage.completed', 'image.active']);
    await d.close();
  });

  it('ignores a repeated or stale job', async () => {
    const d = await domain();
    const { id, run } = await importingImage(d);
    let calls = 0;
    const r = runner(d, { unpack: async (doc) => { calls++; return (draft) => { draft.pipeline!.unpacked = { ...doc.staging! }; }; } });
    await r.handle(job(id, run, 'unpack'), ctx(1));
    await r.handle(job(id, run, 'unpack'), ctx(1)); // delivered twice
    await r.handle(job(id, run - 1, 'inspect'), ctx(1)); // an older run
    await r.handle(job(id, run, 'promote'), ctx(1)); // out of order
    assert.equal(calls, 1);
    assert.equal((await d.manifest.get(id))!.pipeline!.stage, 'inspect');
    await d.close();
  });

  it('kills the image at once when a stage refuses it, with the reason', async () => {
    const d = await domain();
    const { id, run } = await importingImage(d);
    const r = runner(d, { unpack: async () => { throw new RefusedError('bad_thing', 'The image is bad; fix it.'); } });
    await r.handle(job(id, run, 'unpack'), ctx(1));
    const doc = (await d.manifest.get(id))!;
    assert.equal(doc.status, 'killed');
    assert.deepEqual({ stage: doc.failure!.stage, code: doc.failure!.code, message: doc.failure!.message }, { stage: 'unpack', code: 'bad_thing', message: 'The image is bad; fix it.' });
    assert.equal(doc.pipeline!.stages.unpack.status, 'failed');
    await d.close();
  });

  it('asks for a retry on a transient error, and kills the image on the last attempt', async () => {
    const d = await domain();
    const { id, run } = await importingImage(d);
    const r = runner(d, { unpack: async () => { throw new TransientError('disk_hiccup', 'I/O error'); } });
    await assert.rejects(r.handle(job(id, run, 'unpack'), ctx(1, 2)), /I\/O error/);
    let doc = (await d.manifest.get(id))!;
    assert.equal(doc.status, 'importing');
    assert.equal(doc.pipeline!.stages.unpack.status, 'pending');
    await r.handle(job(id, run, 'unpack'), ctx(2, 2));
    doc = (await d.manifest.get(id))!;
    assert.equal(doc.status, 'killed');
    assert.equal(doc.failure!.code, 'disk_hiccup');
    await d.close();
  });
});

describe('Sweepers', () => {
  const settings = { stageDeadlineSeconds: 60, uploadStallSeconds: 30, maxResumes: 1, outboxGraceMs: 0 };

  it('resumes a stuck import under a new run, then kills it when it stays stuck', async () => {
    const d = await domain();
    const { id, run } = await importingImage(d);
    const sweepers = new Sweepers(d.manifest, d.images, d.relay, d.blobs, settings, silent);
    const later = Date.now() + 61_000;
    await sweepers.sweepStale(later);
    let doc = (await d.manifest.get(id))!;
    assert.equal(doc.status, 'importing');
    assert.equal(doc.pipeline!.run, run + 1);
    assert.equal(doc.pipeline!.resumes, 1);
    await d.relay.drain();
    assert.equal(d.published.filter((e) => e.image_id === id && e.type === 'image.import.started').length, 2);
    await sweepers.sweepStale(later + 61_000);
    doc = (await d.manifest.get(id))!;
    assert.equal(doc.status, 'killed');
    assert.equal(doc.failure!.code, 'deadline_exceeded');
    await d.close();
  });

  it('returns an abandoned upload to queued and removes its staging file', async () => {
    const d = await domain();
    const image = await d.images.create(P, { name: 'n', disk_format: 'raw', container_format: 'bare' });
    const ticket = await d.images.beginUpload(P, image.id, 'upload');
    await writeFile(d.blobs.pathOf(ticket.stagingKey), 'partial');
    const sweepers = new Sweepers(d.manifest, d.images, d.relay, d.blobs, settings, silent);
    await sweepers.sweepStale(Date.now() + 10_000);
    assert.equal((await d.manifest.get(image.id))!.status, 'saving', 'not stale yet');
    await sweepers.sweepStale(Date.now() + 31_000);
    const doc = (await d.manifest.get(image.id))!;
    assert.equal(doc.status, 'queued');
    assert.equal(doc.upload, null);
    await assert.rejects(access(d.blobs.pathOf(ticket.stagingKey)), { code: 'ENOENT' }, 'staging file removed');
    await d.close();
  });
});
