import { randomUUID } from 'node:crypto';
import assert from 'node:assert/strict';
import { access, readFile, writeFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import pino, { type Logger } from 'pino';
import { RefusedError, TransientError, errorName } from '../../../core/errors.js';
import type { JobContext, StageJob } from '../../../core/ports.js';
import type { StageName } from '../../../schemas/image.js';
import { StageRunner, type StageWork } from '../../../workers/stage-runner.js';
import { DeferJobError } from '../../../core/jobs.js';
import { BlobStoreUnavailableError } from '../../../core/ports.js';
import { isStoreOutage } from '../../../core/store-outage.js';
import { promoteStage } from '../../../workers/stages/promote.stage.js';
import { imageKey } from '../../../core/blob-keys.js';
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

function runner(d: Awaited<ReturnType<typeof domain>>, overrides: Partial<Record<StageName, StageWork>> = {}, log: Logger = silent) {
  const stages: Record<StageName, StageWork> = {
    unpack: async (doc) => (draft) => { draft.pipeline!.unpacked = { ...doc.staging! }; },
    inspect: async () => (draft) => { draft.virtual_size = 4; },
    checksum: async (doc) => (draft) => { draft.size = 4; draft.checksum = doc.staging!.md5; draft.os_hash_algo = 'sha512'; draft.os_hash_value = doc.staging!.sha512; },
    promote: noop,
    ...overrides,
  };
  return new StageRunner(d.manifest, d.blobs, stages, { stageDeadlineSeconds: 60 }, log);
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
    const lines: { level: number; msg: string; err?: unknown; reason?: string }[] = [];
    const log = pino({ level: 'debug' }, { write: (line: string) => { lines.push(JSON.parse(line)); } });
    const r = runner(d, { unpack: async () => { await new Promise((resolve) => setTimeout(resolve, 20)); throw new RefusedError('bad_thing', 'The image is bad; fix it.'); } }, log);
    await r.handle(job(id, run, 'unpack'), ctx(1));
    const doc = (await d.manifest.get(id))!;
    assert.equal(doc.status, 'killed');
    // The image's fault, not PIR's: an info line with the reason, no error and no stack.
    const refusal = lines.find((l) => l.msg === 'stage refused the image');
    assert.equal(refusal?.level, 30);
    assert.equal(refusal?.reason, 'The image is bad; fix it.');
    assert.equal(refusal?.err, undefined);
    assert.ok(lines.every((l) => l.level < 50), JSON.stringify(lines));
    assert.deepEqual({ stage: doc.failure!.stage, code: doc.failure!.code, message: doc.failure!.message }, { stage: 'unpack', code: 'bad_thing', message: 'The image is bad; fix it.' });
    assert.equal(doc.pipeline!.stages.unpack.status, 'failed');
    assert.ok(doc.pipeline!.stages.unpack.duration_ms! >= 15, `how long the stage ran before it refused: ${doc.pipeline!.stages.unpack.duration_ms}`);
    await d.close();
  });

  it('records how long a fused chain\'s refusing stage ran, from its own start', async () => {
    const d = await domain();
    const { id, run } = await importingImage(d);
    await runner(d, { inspect: async () => { await new Promise((resolve) => setTimeout(resolve, 20)); throw new RefusedError('bad_thing', 'The image is bad.'); } }).handle(fused(id, run), ctx(1));
    const doc = (await d.manifest.get(id))!;
    assert.equal(doc.status, 'killed');
    const inspect = doc.pipeline!.stages.inspect;
    assert.equal(inspect.status, 'failed');
    assert.ok(inspect.duration_ms! >= 15, `duration_ms ${inspect.duration_ms}`);
    assert.ok(Date.parse(inspect.ended_at!) - Date.parse(inspect.started_at!) >= 15, 'started when the stage started, not when the failure was written');
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

const fused = (id: string, run: number, stage: StageName = 'unpack'): StageJob => ({ imageId: id, run, stage, fused: true });

describe('StageRunner: an unreachable image store', () => {
  const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9000'), { code: 'ECONNREFUSED' });

  it('knows a store outage from a fault of the image or of PIR', () => {
    assert.ok(isStoreOutage(refused()));
    assert.ok(isStoreOutage(new BlobStoreUnavailableError('S3 did not answer')));
    assert.ok(isStoreOutage(Object.assign(new Error('x'), { name: 'ServiceUnavailable', $metadata: { httpStatusCode: 503 } })));
    assert.ok(isStoreOutage(new Error('wrapped', { cause: refused() })));
    assert.ok(!isStoreOutage(new Error('a bug')));
    assert.ok(!isStoreOutage(Object.assign(new Error('x'), { code: 'ENOENT' })));
    assert.ok(!isStoreOutage(Object.assign(new Error('x'), { $metadata: { httpStatusCode: 404 } })));
    assert.ok(!isStoreOutage(new TransientError('location_unreadable', 'the location could not be read')), "PIR's own errors are never the store's outage");
  });

  for (const mode of ['one job a stage', 'fused'] as const) {
    it(`${mode}: waits for the store when its attempts run out (deferred, no attempt counted), then goes on once it answers`, async () => {
      const d = await domain();
      const { id, run } = await importingImage(d);
      let down = true;
      const r = runner(d, { inspect: async () => { if (down) throw refused(); return (draft) => { draft.virtual_size = 4; }; } });
      const handle = (attempt: number) => (mode === 'fused' ? r.handle(fused(id, run), ctx(attempt, 2)) : r.handle(job(id, run, 'inspect'), ctx(attempt, 2)));
      if (mode !== 'fused') await r.handle(job(id, run, 'unpack'), ctx(1, 2));
      await assert.rejects(handle(1), /ECONNREFUSED/, 'an attempt left: a retry');
      await assert.rejects(handle(2), (e: unknown) => e instanceof DeferJobError, 'no attempt left: the job waits');
      await assert.rejects(handle(2), (e: unknown) => e instanceof DeferJobError, 'and waits again');
      let doc = (await d.manifest.get(id))!;
      assert.equal(doc.status, 'importing');
      assert.equal(doc.pipeline!.stages.inspect.status, 'pending');
      assert.equal(doc.failure, null);
      down = false;
      if (mode === 'fused') await handle(2);
      else for (const stage of ['inspect', 'checksum', 'promote'] as const) await r.handle(job(id, run, stage), ctx(stage === 'inspect' ? 2 : 1, 2));
      doc = (await d.manifest.get(id))!;
      assert.equal(doc.status, 'active');
      await d.close();
    });
  }

  it('ends the image store_unreachable once its run is older than the stage deadline', async () => {
    const d = await domain();
    const { id, run } = await importingImage(d);
    const r = runner(d, { unpack: async () => { throw refused(); } });
    // The run began longer ago than the deadline (60 s in these runners).
    await d.manifest.update(id, (draft) => { draft.pipeline!.started_at = new Date(Date.now() - 61_000).toISOString(); return []; });
    await r.handle(fused(id, run), ctx(2, 2));
    const doc = (await d.manifest.get(id))!;
    assert.equal(doc.status, 'killed');
    assert.equal(doc.failure!.code, 'store_unreachable');
    assert.match(doc.failure!.message, /image store did not answer while the unpack stage .*ECONNREFUSED.*waited 6[12] s for it/);
    assert.doesNotMatch(doc.failure!.message, /127\.0\.0\.1/, 'no address of PIR\'s store in what the owner reads');
    await d.close();
  });
});



/** Counts the compare-and-set writes the manifest store takes (won or lost). */
function countWrites(d: Awaited<ReturnType<typeof domain>>): () => number {
  let writes = 0;
  const replace = d.store.replace.bind(d.store);
  d.store.replace = (doc, expected) => { writes++; return replace(doc, expected); };
  return () => writes;
}

/** A stage work that never ends: the process running it died mid-stage. */
const dies = (): StageWork => () => new Promise(() => {});

describe('StageRunner: fused chains (small images)', () => {
  it('runs every stage in one job with one manifest write, each stage with its events, timings and start', async () => {
    const d = await domain();
    const { id, run } = await importingImage(d);
    const writes = countWrites(d);
    await runner(d).handle(fused(id, run), ctx(1));
    const doc = (await d.manifest.get(id))!;
    assert.equal(doc.status, 'active');
    assert.equal(writes(), 1, 'one write, at the end');
    assert.equal(doc.pipeline!.stage, 'done');
    assert.equal(doc.virtual_size, 4, "inspect's record applied");
    assert.equal(doc.os_hash_value, 's', "checksum's record applied");
    for (const progress of Object.values(doc.pipeline!.stages)) {
      assert.deepEqual([progress.status, progress.attempts], ['done', 1]);
      assert.ok(progress.started_at && progress.ended_at && progress.duration_ms !== null);
    }
    await d.relay.drain();
    const types = d.published.filter((e) => e.image_id === id && e.type.startsWith('image.stage.')).map((e) => `${e.type} ${(e.data as { stage: string }).stage}`);
    assert.deepEqual(types, ['unpack', 'inspect', 'checksum', 'promote'].flatMap((s) => [`image.stage.started ${s}`, `image.stage.completed ${s}`]));
    assert.equal(d.published.filter((e) => e.image_id === id && e.type === 'image.active').length, 1);
    // The same job again (at-least-once delivery) does nothing.
    await runner(d).handle(fused(id, run), ctx(1));
    assert.equal(writes(), 1);
    await d.close();
  });

  it('after its worker dies before promote, the job delivered again re-runs the chain from the first stage', async () => {
    const d = await domain();
    const { id, run } = await importingImage(d);
    let inspections = 0;
    let inInspect = false;
    void runner(d, { inspect: (doc, c) => { inInspect = true; return dies()(doc, c); } }).handle(fused(id, run), ctx(1));
    await waitUntil(async () => inInspect); // the doomed job sits in inspect; nothing was written since the import
    assert.equal((await d.manifest.get(id))!.pipeline!.stage, 'unpack');
    assert.equal((await d.manifest.get(id))!.pipeline!.stages.unpack.status, 'running');
    await runner(d, { inspect: async () => { inspections++; return (draft) => { draft.virtual_size = 4; }; } }).handle(fused(id, run), { ...ctx(1), redelivered: true });
    const doc = (await d.manifest.get(id))!;
    assert.equal(doc.status, 'active');
    assert.equal(inspections, 1);
    assert.equal(doc.pipeline!.stages.unpack.attempts, 2, 'the re-run counts its start');
    assert.equal(doc.pipeline!.stages.promote.attempts, 1);
    await d.close();
  });

  it('after its worker dies once promote has placed the bytes, the job delivered again re-runs the chain and the image is whole', async () => {
    const d = await domain();
    const { id, run } = await importingImage(d);
    const stagedPath = d.blobs.pathOf((await d.manifest.get(id))!.staging!.key!);
    const realPromote = promoteStage(d.blobs);
    let unpacks = 0;
    let placed = false;
    const counted: StageWork = async (doc) => { unpacks++; return (draft) => { draft.pipeline!.unpacked = { ...doc.staging! }; }; };
    // The store holds the image; the process dies before the chain's one write.
    void runner(d, { unpack: counted, promote: async (doc, c) => { await realPromote(doc, c); placed = true; return new Promise(() => {}); } }).handle(fused(id, run), ctx(1));
    await waitUntil(async () => placed);
    assert.equal((await d.manifest.get(id))!.pipeline!.stage, 'unpack', 'nothing was recorded before promote');
    assert.equal(await readFile(stagedPath, 'utf8'), 'data', 'promotion left the staged bytes in place');
    await runner(d, { unpack: counted, promote: realPromote }).handle(fused(id, run), { ...ctx(1), redelivered: true });
    const doc = (await d.manifest.get(id))!;
    assert.equal(doc.status, 'active');
    assert.equal(unpacks, 2, 'the chain ran again from unpack');
    assert.equal(doc.pipeline!.stages.unpack.attempts, 2);
    assert.equal(doc.pipeline!.stages.promote.attempts, 1, 'the dead attempt never recorded its start');
    assert.equal(await readFile(d.blobs.pathOf(imageKey(id)), 'utf8'), 'data');
    await assert.rejects(access(stagedPath), 'activation removed the staged name');
    await d.close();
  });

  it('an import into chosen stores records the stages before promote first: its copies take long', async () => {
    const d = await domain();
    const { id, run } = await importingImage(d);
    await d.manifest.update(id, (draft) => { draft.store_import = { importing: ['local'], failed: [], must_succeed: true }; return []; });
    const writes = countWrites(d);
    let promoting = false;
    void runner(d, { promote: async () => { promoting = true; return new Promise(() => {}); } }).handle(fused(id, run), ctx(1));
    await waitUntil(async () => promoting);
    const checkpoint = (await d.manifest.get(id))!;
    assert.equal(writes(), 1);
    assert.equal(checkpoint.pipeline!.stages.checksum.status, 'done');
    assert.equal(checkpoint.pipeline!.stages.promote.status, 'running');
    let unpacks = 0;
    await runner(d, { unpack: async () => { unpacks++; return () => {}; } }).handle(fused(id, run), { ...ctx(1), redelivered: true });
    const doc = (await d.manifest.get(id))!;
    assert.equal(doc.status, 'active');
    assert.equal(unpacks, 0, 'the job delivered again went on from promote');
    assert.equal(doc.pipeline!.stages.promote.attempts, 2);
    await d.close();
  });

  it('a transient failure writes what was done; the retry goes on from the failed stage', async () => {
    const d = await domain();
    const { id, run } = await importingImage(d);
    let unpacks = 0;
    let tries = 0;
    const r = runner(d, {
      unpack: async (doc) => { unpacks++; return (draft) => { draft.pipeline!.unpacked = { ...doc.staging! }; }; },
      inspect: async () => { if (++tries === 1) throw new TransientError('disk_hiccup', 'I/O error'); return (draft) => { draft.virtual_size = 4; }; },
    });
    await assert.rejects(r.handle(fused(id, run), ctx(1, 3)), /I\/O error/);
    let doc = (await d.manifest.get(id))!;
    assert.equal(doc.status, 'importing');
    assert.equal(doc.pipeline!.stage, 'inspect');
    assert.equal(doc.pipeline!.stages.unpack.status, 'done');
    assert.deepEqual([doc.pipeline!.stages.inspect.status, doc.pipeline!.stages.inspect.attempts], ['pending', 1]);
    await r.handle(fused(id, run), ctx(2, 3));
    doc = (await d.manifest.get(id))!;
    assert.equal(doc.status, 'active');
    assert.equal(unpacks, 1);
    assert.equal(doc.pipeline!.stages.inspect.attempts, 2);
    await d.close();
  });

  it('a refusal kills the image with the refusing stage as the reason', async () => {
    const d = await domain();
    const { id, run } = await importingImage(d);
    await runner(d, { checksum: async () => { throw new RefusedError('checksum_mismatch', 'Not the bytes promised.'); } }).handle(fused(id, run), ctx(1));
    const doc = (await d.manifest.get(id))!;
    assert.equal(doc.status, 'killed');
    assert.deepEqual([doc.failure!.stage, doc.failure!.code], ['checksum', 'checksum_mismatch']);
    assert.deepEqual([doc.pipeline!.stages.inspect.status, doc.pipeline!.stages.checksum.status, doc.pipeline!.stages.promote.status], ['done', 'failed', 'pending']);
    await d.close();
  });

  it('a fused job of an older run, or one behind the recorded stage, does nothing', async () => {
    const d = await domain();
    const { id, run } = await importingImage(d);
    const writes = countWrites(d);
    await runner(d).handle(fused(id, run - 1), ctx(1));
    await runner(d).handle(fused(id, run, 'inspect'), ctx(1)); // the manifest is still at unpack
    assert.equal(writes(), 0);
    assert.equal((await d.manifest.get(id))!.pipeline!.stage, 'unpack');
    await d.close();
  });
});

async function waitUntil(check: () => Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

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

  it('resumes at once an import whose job stalled out (the queue dropped it), and only the run it belonged to', async () => {
    const d = await domain();
    const { id, run } = await importingImage(d);
    const sweepers = new Sweepers(d.manifest, d.images, d.relay, d.blobs, settings, silent);
    await sweepers.resumeStalledOut({ imageId: id, run: run - 1, stage: 'unpack' });
    assert.equal((await d.manifest.get(id))!.pipeline!.run, run, 'a job of an older run changes nothing');
    await sweepers.resumeStalledOut({ imageId: id, run, stage: 'unpack' });
    const doc = (await d.manifest.get(id))!;
    assert.equal(doc.status, 'importing');
    assert.equal(doc.pipeline!.run, run + 1, 'resumed under a new run, well before the stage deadline');
    assert.equal(doc.pipeline!.resumes, 1, 'counted, so an image that keeps killing its workers is killed in the end');
    await sweepers.resumeStalledOut({ imageId: randomUUID(), run: 1, stage: 'unpack' }); // no such image: nothing to do
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

describe('what a failure tells the image owner', () => {
  it('names an unexpected error by its code or class, never its message', () => {
    const enotdir = Object.assign(new Error("ENOTDIR: not a directory, open '/var/lib/pir/images/x'"), { code: 'ENOTDIR' });
    assert.equal(errorName(enotdir), 'ENOTDIR');
    assert.equal(errorName(new TypeError('/etc/passwd')), 'TypeError');
    assert.equal(errorName(Object.assign(new Error('x'), { code: '/tmp/evil path' })), 'Error');
    assert.equal(errorName(null), 'Error');
  });
});
