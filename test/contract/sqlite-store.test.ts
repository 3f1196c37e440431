/** SQLite store specifics: a manifest written before the list columns and side tables is migrated on open. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SqliteManifestStore } from '../../infra/embedded/sqlite-manifest-store.js';
import type { ListQuery } from '../../core/ports.js';
import { makeDoc } from './helpers.js';

/** The images table as schema 1 (the first SQLite manifest) created it. */
const SCHEMA_1_IMAGES = `CREATE TABLE images (id TEXT PRIMARY KEY, revision INTEGER NOT NULL, status TEXT NOT NULL, owner TEXT, name TEXT,
    visibility TEXT NOT NULL, disk_format TEXT, container_format TEXT, size INTEGER, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    has_pending INTEGER NOT NULL DEFAULT 0, doc TEXT NOT NULL);`;

test('SQLite store: a schema-1 file gets the list columns and side tables from its documents', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pir-sqlite-migrate-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'manifest.sqlite');
  // The table as the previous version created it, with one document.
  const old = new Database(path);
  old.exec(`${SCHEMA_1_IMAGES} CREATE INDEX images_owner ON images (owner);`);
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

test('SQLite store: a replace that changes no property, tag, member or word leaves the side rows alone; one that does, or one after another connection wrote, rewrites them', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pir-siderows-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'manifest.sqlite');
  const a = new SqliteManifestStore({ path });
  const b = new SqliteManifestStore({ path });
  const raw = new Database(path, { readonly: true });
  t.after(async () => { raw.close(); await a.close(); await b.close(); });
  const props = (id: string) => raw.prepare('SELECT key, value FROM image_properties WHERE image_id = ? ORDER BY key').all(id);
  // Count the side-row rewrites of connection a (each starts by deleting the image's properties).
  let rewrites = 0;
  const stmts = (a as unknown as { stmts: { deleteProperties: { run: (...args: unknown[]) => unknown } } }).stmts;
  const run = stmts.deleteProperties.run.bind(stmts.deleteProperties);
  stmts.deleteProperties = { run: (...args: unknown[]) => { rewrites++; return run(...args); } };
  const doc = { ...makeDoc(), properties: { os_distro: 'debian' }, tags: ['x'] };
  await a.create(doc);
  assert.equal(await a.replace({ ...doc, revision: 2, status: 'saving' }, 1), true);
  assert.equal(rewrites, 0, 'a status-only change rewrites no side row');
  assert.deepEqual(props(doc.id), [{ key: 'os_distro', value: 'debian' }]);
  // A property change is written.
  assert.equal(await a.replace({ ...doc, revision: 3, status: 'saving', properties: { os_distro: 'ubuntu' } }, 2), true);
  assert.deepEqual(props(doc.id), [{ key: 'os_distro', value: 'ubuntu' }]);
  assert.equal(rewrites, 1);
  // Another connection changes the properties; this one's next status-only write (from that revision) must keep them.
  assert.equal(await b.replace({ ...doc, revision: 4, status: 'saving', properties: { os_distro: 'arch' } }, 3), true);
  assert.deepEqual(props(doc.id), [{ key: 'os_distro', value: 'arch' }]);
  assert.equal(await a.replace({ ...doc, revision: 5, status: 'importing', properties: { os_distro: 'ubuntu' } }, 4), true, 'a stale view of the properties, written on purpose');
  assert.deepEqual(props(doc.id), [{ key: 'os_distro', value: 'ubuntu' }], 'written: the revision it replaced was not this connection\'s');
  assert.equal(await b.replace({ ...doc, revision: 6, status: 'active', properties: { os_distro: 'ubuntu' } }, 5), true);
  assert.deepEqual(props(doc.id), [{ key: 'os_distro', value: 'ubuntu' }]);
});

test('SQLite store: a schema-3 file (image_words without weights, no FTS5 index) is searched and ranked after opening', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pir-sqlite-migrate3-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'manifest.sqlite');
  const docs = [
    makeDoc({ owner: 'p1', visibility: 'public', name: 'plain', tags: ['debian'], properties: { description: 'noble gpu' }, created_at: '2025-01-01T00:00:02Z' }),
    makeDoc({ owner: 'p1', visibility: 'public', name: 'Debian noble', tags: [], properties: {}, created_at: '2025-01-01T00:00:01Z' }),
  ];
  // Written by this version, then taken back to schema 3: the weight column and the FTS5 tables dropped.
  const first = new SqliteManifestStore({ path });
  for (const d of docs) await first.create(d);
  await first.close();
  const old = new Database(path);
  old.exec(`DROP TABLE image_search; DROP TABLE image_docids; DROP TABLE image_words;
    CREATE TABLE image_words (image_id TEXT NOT NULL, word TEXT NOT NULL, PRIMARY KEY (image_id, word)) WITHOUT ROWID;`);
  for (const d of docs) for (const w of ['debian', 'noble', ...(d.name === 'plain' ? ['plain', 'gpu'] : [])]) old.prepare('INSERT INTO image_words VALUES (?, ?)').run(d.id, w);
  old.pragma('user_version = 3');
  old.close();

  const store = new SqliteManifestStore({ path, driveMax: 0 });
  t.after(() => store.close());
  const query = { scope: { project_id: 'p2', admin: false }, memberStatus: 'accepted' as const, where: {}, sort: [{ key: 'created_at' as const, dir: 'desc' as const }], limit: 10, search: { words: ['debian'], prefix: 'nob' } };
  assert.deepEqual((await store.list(query)).map((d) => d.id), [docs[0]!.id, docs[1]!.id]);
  // Ranked by where the words are: both in the name (8) before a tag and a property (3).
  assert.deepEqual((await store.rankedList(query)).map((d) => d.id), [docs[1]!.id, docs[0]!.id]);
  assert.deepEqual((await store.list({ ...query, search: { words: ['gpu'], prefix: 'debian' } })).map((d) => d.id), [docs[0]!.id]);
  // The FTS5 index was filled from the documents.
  const check = new Database(path, { readonly: true });
  t.after(() => check.close());
  assert.equal((check.prepare(`SELECT count(*) AS n FROM image_search WHERE image_search MATCH '"noble" AND "debian"'`).get() as { n: number }).n, 2);
  assert.equal((check.prepare(`SELECT count(*) AS n FROM image_search WHERE image_search MATCH '"gpu" AND "deb"*'`).get() as { n: number }).n, 1);
});

test('SQLite store: a replace that sets only the columns that changed keeps every list index right (status only, name and visibility, size and digests) and still loses on a stale revision', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pir-changed-columns-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'manifest.sqlite');
  const store = new SqliteManifestStore({ path });
  t.after(() => store.close());
  const doc = makeDoc({ owner: 'p1', name: 'before', status: 'queued', visibility: 'private' });
  await store.create(doc);
  const admin = { scope: { project_id: 'admin', admin: true }, memberStatus: 'all' as const, sort: [{ key: 'created_at' as const, dir: 'desc' as const }], limit: 10 };
  const ids = async (where: object, extra: object = {}) => (await store.list({ ...admin, where, ...extra })).map((d) => d.id);
  const replace = async (change: object) => {
    const current = (await store.get(doc.id))!;
    assert.equal(await store.replace({ ...current, ...change, revision: current.revision + 1, updated_at: new Date().toISOString() }, current.revision), true);
  };
  // The pipeline's kind of write (status only), then a PATCH's (name, visibility), then the size and digests.
  await replace({ status: 'saving' });
  assert.deepEqual(await ids({ status: ['saving'] }), [doc.id]);
  assert.deepEqual(await ids({ status: ['queued'] }), []);
  await replace({ name: 'after', visibility: 'public' });
  assert.deepEqual(await ids({ name: ['after'] }, { visibility: 'public' }), [doc.id]);
  assert.deepEqual(await ids({ name: ['before'] }), []);
  assert.deepEqual(await ids({}, { visibility: 'private' }), []);
  await replace({ status: 'active', size: 1024, checksum: 'c0ffee' });
  assert.deepEqual(await ids({ status: ['active'], checksum: 'c0ffee' }), [doc.id]);
  assert.deepEqual(await ids({}, { sizeMin: 1024, sizeMax: 1024 }), [doc.id]);
  // A stale revision still loses, and the indexes are whole.
  const current = (await store.get(doc.id))!;
  assert.equal(await store.replace({ ...current, status: 'killed' }, current.revision - 1), false);
  assert.equal((await store.get(doc.id))!.status, 'active');
  const check = new Database(path, { readonly: true });
  t.after(() => check.close());
  assert.deepEqual(check.pragma('integrity_check'), [{ integrity_check: 'ok' }]);
});

test('SQLite store: checksum and os_hash_value filters are index lookups (EXPLAIN QUERY PLAN), also in a file made before the indexes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pir-hash-index-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'manifest.sqlite');
  const first = new SqliteManifestStore({ path });
  const doc = makeDoc({ checksum: 'c0ffee', os_hash_algo: 'sha512', os_hash_value: 'f00d' });
  await first.create(doc);
  await first.close();
  // A file from before the indexes: they are created when it is opened.
  const old = new Database(path);
  old.exec('DROP INDEX images_checksum; DROP INDEX images_os_hash_value;');
  old.close();
  const store = new SqliteManifestStore({ path });
  t.after(() => store.close());
  const admin = { scope: { project_id: 'admin', admin: true }, visibility: 'all' as const, memberStatus: 'all' as const, sort: [{ key: 'created_at' as const, dir: 'desc' as const }], limit: 25 };
  const checksum = store.explainList({ ...admin, where: { checksum: 'c0ffee' } }).join('\n');
  assert.match(checksum, /USING INDEX images_checksum \(checksum=\?\)/, checksum);
  const hash = store.explainList({ ...admin, where: { os_hash_value: 'f00d' } }).join('\n');
  assert.match(hash, /USING INDEX images_os_hash_value \(os_hash_value=\?\)/, hash);
  assert.deepEqual((await store.list({ ...admin, where: { checksum: 'c0ffee' } })).map((d) => d.id), [doc.id]);
  assert.deepEqual((await store.list({ ...admin, where: { os_hash_value: 'f00d' } })).map((d) => d.id), [doc.id]);
  assert.deepEqual(await store.list({ ...admin, where: { os_hash_value: 'c0ffee' } }), []);
});

test('SQLite store: a page after a marker sorted by name or updated_at walks an index and stops at the limit (no MULTI-INDEX OR, no temp b-tree)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pir-keyset-plan-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = new SqliteManifestStore({ path: join(dir, 'manifest.sqlite') });
  t.after(() => store.close());
  const base = { where: {}, memberStatus: 'accepted' as const, limit: 25 };
  const scopes = [
    { scope: { project_id: 'admin', admin: true } },
    { scope: { project_id: 'p1', admin: false } },
  ]; // (visibility=shared starts from the caller's few images and sorts those: not this plan)
  const asc = 'asc' as const;
  const desc = 'desc' as const;
  const sorts = [
    [{ key: 'name' as const, dir: asc }, { key: 'created_at' as const, dir: asc }, { key: 'id' as const, dir: asc }],
    [{ key: 'name' as const, dir: desc }, { key: 'created_at' as const, dir: desc }, { key: 'id' as const, dir: desc }],
    [{ key: 'name' as const, dir: asc }, { key: 'created_at' as const, dir: desc }, { key: 'id' as const, dir: desc }],
    [{ key: 'name' as const, dir: desc }, { key: 'created_at' as const, dir: asc }, { key: 'id' as const, dir: asc }],
    [{ key: 'updated_at' as const, dir: asc }, { key: 'created_at' as const, dir: asc }, { key: 'id' as const, dir: asc }],
    [{ key: 'updated_at' as const, dir: desc }, { key: 'created_at' as const, dir: desc }, { key: 'id' as const, dir: desc }],
  ];
  for (const scope of scopes) {
    for (const sort of sorts) {
      for (const after of [[sort[0]!.key === 'name' ? 'ubuntu' : '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z', 'some-id'], [null, '2025-01-01T00:00:00.000Z', 'some-id']]) {
        if (sort[0]!.key === 'updated_at' && after[0] === null) continue; // updated_at is never NULL
        for (const query of [{ ...base, ...scope, sort }, { ...base, ...scope, sort, after }] as ListQuery[]) {
          const plan = store.explainList(query).join('\n');
          const what = `${JSON.stringify(scope)} ${JSON.stringify(sort)} ${JSON.stringify(query.after ?? null)}:\n${plan}`;
          assert.doesNotMatch(plan, /TEMP B-TREE|MULTI-INDEX OR/, what);
          assert.match(plan, sort[0]!.key === 'name' ? /images_list_name/ : /images_list_updated/, what);
        }
      }
    }
  }
});

test('SQLite store: upgrading an older file logs how many documents it rewrites, its progress and the time it took (the data as before)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pir-sqlite-migrate-log-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'manifest.sqlite');
  const old = new Database(path);
  old.exec(SCHEMA_1_IMAGES);
  const docs = Array.from({ length: 7 }, (_, i) => makeDoc({ checksum: `sum-${i}`, tags: [`t${i}`] }));
  for (const doc of docs) {
    old.prepare(`INSERT INTO images (id, revision, status, owner, name, visibility, disk_format, container_format, size, created_at, updated_at, has_pending, doc)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)`).run(doc.id, doc.revision, doc.status, doc.owner, doc.name, doc.visibility, doc.disk_format, doc.container_format, doc.size, doc.created_at, doc.updated_at, JSON.stringify(doc));
  }
  old.close();
  const lines: { fields: Record<string, unknown>; msg: string }[] = [];
  const logger = { info: (fields: Record<string, unknown>, msg: string) => void lines.push({ fields, msg }) };
  const store = new SqliteManifestStore({ path, logger: logger as never, migrateLogEvery: 3 });
  t.after(() => store.close());
  assert.deepEqual(lines.map((l) => l.fields.done ?? null), [null, 3, 6, null], lines.map((l) => l.msg).join('\n'));
  assert.equal(lines[0]!.fields.documents, 7);
  assert.match(lines[0]!.msg, /from version 0 to \d+: rewriting 7 documents/);
  assert.match(lines[3]!.msg, /schema upgraded to version \d+: 7 documents in \d+\.\d s/);
  assert.equal(typeof lines[3]!.fields.elapsed_s, 'number');
  const admin = { scope: { project_id: 'admin', admin: true }, visibility: 'all' as const, memberStatus: 'all' as const, sort: [{ key: 'created_at' as const, dir: 'desc' as const }], limit: 25 };
  assert.deepEqual((await store.list({ ...admin, where: { checksum: 'sum-4' } })).map((d) => d.id), [docs[4]!.id]);
  assert.deepEqual((await store.list({ ...admin, where: {}, tags: ['t2'] })).map((d) => d.id), [docs[2]!.id]);
  // Opened again: nothing to upgrade, nothing logged; a new empty file logs nothing either.
  await store.close();
  const again = new SqliteManifestStore({ path, logger: logger as never });
  await again.close();
  const empty = new SqliteManifestStore({ path: join(dir, 'empty.sqlite'), logger: logger as never });
  await empty.close();
  assert.equal(lines.length, 4);
});

test('SQLite store: a project that sees few images, all old (public ones here), reads them instead of walking past everyone else\'s; a project that owns many walks', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pir-visible-set-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = new SqliteManifestStore({ path: join(dir, 'manifest.sqlite') });
  t.after(() => store.close());
  const at = (i: number) => new Date(Date.parse('2025-01-01T00:00:00Z') + i * 1000).toISOString();
  // 60 public images first (the oldest), then 6,000 private ones of two projects: more than DRIVE_MAX.
  const docs = Array.from({ length: 6060 }, (_, i) => makeDoc({
    owner: i < 60 ? 'pold' : i % 2 ? 'p1' : 'p2', visibility: i < 60 ? 'public' : 'private', name: `image-${i}`, created_at: at(i), updated_at: at(i),
  }));
  for (let i = 0; i < docs.length; i += 1000) await store.createMany(docs.slice(i, i + 1000));
  const sort = [{ key: 'created_at' as const, dir: 'desc' as const }, { key: 'id' as const, dir: 'desc' as const }];
  const query = (project: string): ListQuery => ({ scope: { project_id: project, admin: false }, memberStatus: 'accepted', where: {}, limit: 25, sort });
  const lonely = store.explainList(query('lonely')).join('\n');
  assert.match(lonely, /CO-ROUTINE d|SCAN d/, `the visible set drives:\n${lonely}`);
  const page = await store.list(query('lonely'));
  assert.deepEqual(page.map((d) => d.name), Array.from({ length: 25 }, (_, k) => `image-${59 - k}`), 'the 25 newest public images, in order');
  const owner = store.explainList(query('p1')).join('\n');
  assert.doesNotMatch(owner, /CO-ROUTINE d|SCAN d/, `an owner of half the images walks the index:\n${owner}`);
  assert.equal((await store.list(query('p1'))).length, 25);
});
