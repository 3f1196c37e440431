/** Embedded-adapter specifics beyond the shared contracts. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import { SqliteManifestStore } from '../../infra/embedded/sqlite-manifest-store.js';
import { MemoryJobQueue } from '../../infra/embedded/memory-job-queue.js';
import { MemoryEventBus } from '../../infra/embedded/memory-event-bus.js';
import { makeDoc, makeEvent, outboxEvent, waitFor } from './helpers.js';
import type { PirEvent } from '../../schemas/events.js';

test('SQLite store: WAL with group commit (synchronous=NORMAL plus an fdatasync of the WAL before a write resolves), and what was written survives reopening', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pir-sqlite-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'manifest.sqlite');
  const store = new SqliteManifestStore({ path });
  const doc = makeDoc();
  doc.outbox = [outboxEvent(doc.id)];
  await store.create(doc);
  assert.equal(await store.replace({ ...doc, revision: 2, status: 'saving' }, 1), true);
  assert.deepEqual(store.durability(), { journalMode: 'wal', synchronous: 1 }, 'WAL with synchronous=NORMAL (1): the group commit syncs the WAL');
  assert.equal(store.commits.writes, 2, 'both writes waited for an fdatasync of the WAL');
  assert.ok(store.commits.syncs >= 1 && store.commits.syncs <= 2);
  const raw = new Database(path, { readonly: true });
  assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal', 'WAL is a property of the file');
  raw.close();
  await store.close();
  const again = new SqliteManifestStore({ path });
  t.after(() => again.close());
  assert.deepEqual(await again.get(doc.id), { ...doc, revision: 2, status: 'saving' });
  assert.equal((await again.withPendingEvents(new Date(Date.now() + 1000).toISOString(), 10)).length, 1);
});

test('memory queue: remembered finished ids are bounded (LRU)', async (t) => {
  const q = new MemoryJobQueue({ retry: { attempts: 1, backoffMs: 1 }, rememberFinished: 2, logger: pino({ level: 'silent' }) });
  t.after(() => q.close(100));
  const runs: string[] = [];
  await q.process('unpack', 1, async (job) => { runs.push(job.imageId); });
  for (const id of ['a', 'b', 'c']) await q.enqueueChain([{ imageId: id, run: 1, stage: 'unpack' }]);
  await waitFor('three jobs', () => runs.length === 3);
  assert.equal(q.stateOf('a.1.unpack'), null, 'the oldest id was forgotten');
  assert.equal(q.stateOf('c.1.unpack'), 'completed');
  await q.enqueueChain([{ imageId: 'c', run: 1, stage: 'unpack' }]); // still remembered: no-op
  await q.enqueueChain([{ imageId: 'a', run: 1, stage: 'unpack' }]); // forgotten: runs again
  await waitFor('a again', () => runs.length === 4);
  assert.deepEqual(runs, ['a', 'b', 'c', 'a']);
});

test('memory bus: a group subscribing later gets the retained log first (like fromBeginning)', async (t) => {
  const bus = new MemoryEventBus({ retain: 3, logger: pino({ level: 'silent' }) });
  t.after(() => bus.close());
  const early = [1, 2, 3, 4].map((i) => makeEvent('img', i));
  await bus.publish(early);
  const got: PirEvent[] = [];
  await bus.subscribe('late', async (e) => { got.push(e); });
  await bus.publish([makeEvent('img', 5)]);
  await waitFor('4 events', () => got.length === 4);
  assert.deepEqual(got.map((e) => (e.data as { attempt: number }).attempt), [2, 3, 4, 5]);
});

test('memory bus: the retained log stays the last `retain` events across many publishes (compacted in batches)', async (t) => {
  const bus = new MemoryEventBus({ retain: 3, logger: pino({ level: 'silent' }) });
  t.after(() => bus.close());
  for (let i = 1; i <= 20; i++) await bus.publish([makeEvent('img', i)]);
  const got: PirEvent[] = [];
  await bus.subscribe('late', async (e) => { got.push(e); });
  await bus.publish([makeEvent('img', 21)]);
  await waitFor('4 events', () => got.length === 4);
  assert.deepEqual(got.map((e) => (e.data as { attempt: number }).attempt), [18, 19, 20, 21]);
});
