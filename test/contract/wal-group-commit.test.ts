/**
 * Group commit (infra/embedded/wal-group-commit.ts): writes resolve only after an fdatasync of
 * the WAL that began after their commit; concurrent writes share fdatasyncs; a failed sync is
 * sticky.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { WalGroupCommit } from '../../infra/embedded/wal-group-commit.js';
import { SqliteManifestStore } from '../../infra/embedded/sqlite-manifest-store.js';
import { makeDoc } from './helpers.js';

function tempDir(t: { after: (f: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'pir-walgc-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('group commit: 50 concurrent writes share fdatasyncs, and each resolves only after one', async (t) => {
  const path = join(tempDir(t), 'm.sqlite');
  const store = new SqliteManifestStore({ path });
  t.after(() => store.close());
  const docs = Array.from({ length: 50 }, () => makeDoc());
  await Promise.all(docs.map((d) => store.create(d)));
  assert.equal(store.commits.writes, 50);
  assert.ok(store.commits.syncs >= 1 && store.commits.syncs < 50, `${store.commits.syncs} fdatasyncs for 50 concurrent writes`);
  const before = store.commits.syncs;
  await Promise.all(docs.map((d) => store.replace({ ...d, revision: 2, status: 'saving' }, 1)));
  assert.ok(store.commits.syncs > before, 'the replaces waited for a sync of their own');
  assert.equal(await store.replace({ ...docs[0]!, revision: 3 }, 1), false, 'a lost compare-and-set writes nothing');
  assert.equal(store.commits.writes, 100, 'a lost compare-and-set waits for no sync');
});

test('group commit: a write resolves only after a sync that started after its commit', async (t) => {
  const dir = tempDir(t);
  const db = new Database(join(dir, 'x.sqlite'));
  t.after(() => db.close());
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE t (n INTEGER)');
  const gc = new WalGroupCommit(db, join(dir, 'x.sqlite'));
  db.prepare('INSERT INTO t VALUES (1)').run();
  const first = gc.durable(); // starts a sync at once
  db.prepare('INSERT INTO t VALUES (2)').run();
  const second = gc.durable(); // committed after that sync began: needs the next one
  await first;
  assert.equal(gc.syncs, 1);
  await second;
  assert.equal(gc.syncs, 2, 'the second write got a sync of its own');
  await gc.close();
});

test('group commit: a failed fdatasync rejects that write and every later one', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'y.sqlite');
  const db = new Database(path);
  t.after(() => db.close());
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE t (n INTEGER)');
  // A WAL path that cannot be opened stands in for an I/O error.
  const gc = new WalGroupCommit(db, join(dir, 'missing', 'y.sqlite'));
  await assert.rejects(gc.durable(), /could not be synced to disk.*restart/);
  await assert.rejects(gc.durable(), /could not be synced to disk/, 'sticky');
});
