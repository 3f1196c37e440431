/** SQLite store specifics: a manifest written before the list columns and side tables is migrated on open. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SqliteManifestStore } from '../../infra/embedded/sqlite-manifest-store.js';
import { makeDoc } from './helpers.js';

test('SQLite store: a schema-1 file gets the list columns and side tables from its documents', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pir-sqlite-migrate-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'manifest.sqlite');
  // The table as the previous version created it, with one document.
  const old = new Database(path);
  old.exec(`CREATE TABLE images (id TEXT PRIMARY KEY, revision INTEGER NOT NULL, status TEXT NOT NULL, owner TEXT, name TEXT,
    visibility TEXT NOT NULL, disk_format TEXT, container_format TEXT, size INTEGER, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    has_pending INTEGER NOT NULL DEFAULT 0, doc TEXT NOT NULL); CREATE INDEX images_owner ON images (owner);`);
  const doc = makeDoc({ protected: true, checksum: 'abc', tags: ['t1'], properties: { os_distro: 'debian' }, members: [{ member_id: 'p2', status: 'accepted', created_at: 'x', updated_at: 'x' }], visibility: 'shared', owner: 'p1' });
  old.prepare(`INSERT INTO images (id, revision, status, owner, name, visibility, disk_format, container_format, size, created_at, updated_at, has_pending, doc)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)`).run(doc.id, doc.revision, doc.status, doc.owner, doc.name, doc.visibility, doc.disk_format, doc.container_format, doc.size, doc.created_at, doc.updated_at, JSON.stringify(doc));
  old.close();

  const store = new SqliteManifestStore({ path });
  t.after(() => store.close());
  const base = { scope: { project_id: 'p2', admin: false }, memberStatus: 'accepted' as const, sort: [{ key: 'created_at' as const, dir: 'desc' as const }], limit: 10 };
  const ids = async (extra: object) => (await store.list({ ...base, where: {}, ...extra })).map((d) => d.id);
  assert.deepEqual(await ids({ properties: { os_distro: 'debian' } }), [doc.id]);
  assert.deepEqual(await ids({ tags: ['t1'] }), [doc.id]);
  assert.deepEqual(await ids({ where: { protected: true, checksum: 'abc' } }), [doc.id]);
  assert.deepEqual(await ids({ scope: { project_id: 'p3', admin: false } }), [], 'the membership came from the document');
  assert.deepEqual(await store.get(doc.id), doc);
});
