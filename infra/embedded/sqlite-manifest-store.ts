/**
 * ManifestStore on SQLite (better-sqlite3): the embedded mode's manifest.
 *
 * One row per image. The JSON document is the truth; the other columns are copies of the
 * fields the store filters and sorts on, and three side tables hold what GET /v2/images filters
 * on inside the document (image_properties, image_tags, image_members). All of them are
 * rewritten from the document in the same transaction as every write, so they never drift, and
 * property, tag and membership filters are index lookups. WAL with group commit
 * (wal-group-commit.ts): a write whose promise resolved survives a crash or power loss, as with
 * synchronous=FULL, but the fsync runs off the event loop, shared by the writes made meanwhile.
 * better-sqlite3 is synchronous, so each call runs to completion on the event loop; writes
 * that read first (ackEvents) run in an IMMEDIATE transaction so another process sharing the
 * file cannot interleave.
 */
import Database from 'better-sqlite3';
import { symbols, type Logger } from 'pino';
import { IMAGE_STATUSES, type ImageDoc, type ImageStatus } from '../../schemas/image.js';
import { listAccess, normalizeSort } from '../../core/list-access.js';
import { ManifestConflictError, RetiredIdError } from '../../core/ports.js';
import { possibleScores, prefixEnd, weightedWords } from '../../core/search.js';
import { SEARCH_SCHEMA, SqliteSearchIndex, type TermWeights } from './sqlite-search-index.js';
import { GALLERY_PROPERTY } from '../../core/gallery-rules.js';
import type { ListQuery, ManifestStore, RankedAfter, SortKey, SortSpec, SortValue } from '../../core/ports.js';
import { WalGroupCommit } from './wal-group-commit.js';
import { StartupError } from '../startup-error.js';
import { manifestWrites } from '../telemetry/metrics.js';

export interface SqliteManifestStoreOptions {
  /** Database file path, or ':memory:' (tests only: nothing survives the process). */
  path: string;
  /** How long a writer waits for another process's lock before failing (default 5000 ms). */
  busyTimeoutMs?: number;
  /** A filter matching at most this many rows drives the list query (default: see DRIVE_MAX; tests set it to exercise both plans). */
  driveMax?: number;
  /** Where the upgrade of an older file (migrate) reports its progress; none by default. */
  logger?: Pick<Logger, 'info'>;
  /** The upgrade logs its progress every this many documents (default MIGRATE_LOG_EVERY; tests set it lower). */
  migrateLogEvery?: number;
}

/** The upgrade of an older file logs its progress every this many documents. */
const MIGRATE_LOG_EVERY = 10_000;

/**
 * Writes out what the logger holds: the upgrade blocks the event loop, and pino's stdout stream
 * writes asynchronously, so its progress lines would otherwise all appear when it ends. A
 * logger without such a stream (a transport, a test's) is left alone.
 */
function flushLog(logger: unknown): void {
  try {
    const stream = (logger as Record<symbol, { flushSync?: () => void } | undefined> | undefined)?.[symbols.streamSym];
    stream?.flushSync?.();
  } catch {
    // not ready, or a stream that cannot flush synchronously: the lines come out later
  }
}

/** Columns the store sorts on (ListQuery sort keys → column). */
const SORT_COLUMNS: Record<SortKey, string> = {
  id: 'id',
  status: 'status',
  name: 'name',
  disk_format: 'disk_format',
  container_format: 'container_format',
  size: 'size',
  created_at: 'created_at',
  updated_at: 'updated_at',
};

/** Equality / any-of filters (ListQuery.where keys) → column. */
const WHERE_COLUMNS: Record<keyof ListQuery['where'], string> = {
  id: 'id',
  name: 'name',
  status: 'status',
  disk_format: 'disk_format',
  container_format: 'container_format',
  owner: 'owner',
  protected: 'protected',
  os_hidden: 'os_hidden',
  checksum: 'checksum',
  os_hash_value: 'os_hash_value',
};

/** Filters served by an index of their own (selective: a few images each); the others are checked row by row. */
const INDEXED_FILTERS = new Set<keyof ListQuery['where']>(['id', 'name', 'checksum', 'os_hash_value']);

/** A filter matching at most this many rows drives the list query (see listSql)… */
const DRIVE_MAX = 4000;
/** …or this many per row of the page, up to DRIVE_MAX_LONG_PAGE. */
const DRIVE_PER_ROW = 16;
const DRIVE_MAX_LONG_PAGE = 20_000;
/** How long the image count behind a visible set's driving bound is reused. */
const IMAGE_COUNT_MS = 30_000;
/** Relevance tiers walked (not driven by their images) before a page is read by scoring every match instead. */
const MAX_TIER_WALKS = 3;
/** A relevance tier's images (SqliteSearchIndex.tierSql) drive up to this many rows per row of the page. */
const TIER_DRIVE_PER_ROW = 16;
/** The FTS5 intersection of a search's words drives up to this many rows per row of the page. */
const FTS_DRIVE_PER_ROW = 40;

/** A list query: its SQL (LIMIT the last parameter), or, read one after the other until the page is full, segments of it. */
interface ListPlan {
  sql: string;
  params: unknown[];
  driven: boolean;
  segments?: { sql: string; params: unknown[] }[];
}

/**
 * How rankedList asks listSql to rank: `best`, the whole candidate set by score (after `from`);
 * `tier`, only the images of one score, in the list's order (walking the list index).
 */
type Ranking = { best: true; from?: RankedAfter } | { tier: number; terms: TermWeights };

function marks(values: readonly unknown[]): string {
  return values.map(() => '?').join(', ');
}

/**
 * Bumped when the schema gains columns or side tables, or the search words change (5: words in
 * Unicode NFC, core/search.ts WORDS_VERSION 2); opening an older file migrates it (rewrites every
 * image's side rows and words, once).
 */
const SCHEMA_VERSION = 5;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS images (
  id               TEXT    PRIMARY KEY,
  revision         INTEGER NOT NULL,
  status           TEXT    NOT NULL,
  owner            TEXT,
  name             TEXT,
  visibility       TEXT    NOT NULL,
  disk_format      TEXT,
  container_format TEXT,
  size             INTEGER,
  created_at       TEXT    NOT NULL,
  updated_at       TEXT    NOT NULL,
  has_pending      INTEGER NOT NULL DEFAULT 0,
  doc              TEXT    NOT NULL,
  protected        INTEGER NOT NULL DEFAULT 0,
  os_hidden        INTEGER NOT NULL DEFAULT 0,
  checksum         TEXT,
  os_hash_value    TEXT
);
CREATE INDEX IF NOT EXISTS images_status_updated ON images (status, updated_at);
CREATE INDEX IF NOT EXISTS images_pending_updated ON images (updated_at) WHERE has_pending = 1;
CREATE INDEX IF NOT EXISTS images_created ON images (created_at, id);
CREATE INDEX IF NOT EXISTS images_visibility ON images (visibility);
`;

/** Created after the migration has added the columns they name. */
const LIST_SCHEMA = `
CREATE INDEX IF NOT EXISTS images_list_created ON images (created_at, id, owner, visibility, status, os_hidden, protected, size, name, updated_at, disk_format, container_format);
DROP INDEX IF EXISTS images_owner;
CREATE INDEX IF NOT EXISTS images_owner_visibility ON images (owner, visibility, id);
-- Sorted by name or updated_at (then created_at, id): a page, also after a marker
-- (keysetSegments), is a walk of one of these that stops at the limit; they replace
-- images_name (name) and images_updated (updated_at, id). images_list_name_mixed serves name
-- and its tie-breaks in opposite directions (sort=name:asc,created_at:desc), read either way.
DROP INDEX IF EXISTS images_name;
DROP INDEX IF EXISTS images_updated;
CREATE INDEX IF NOT EXISTS images_list_name ON images (name, created_at, id);
CREATE INDEX IF NOT EXISTS images_list_name_mixed ON images (name, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS images_list_updated ON images (updated_at, created_at, id);
CREATE INDEX IF NOT EXISTS images_list_id ON images (id, created_at, owner, visibility, status, os_hidden, protected, size, name, updated_at, disk_format, container_format);
-- Glance's checksum_image_idx and os_hash_value_image_idx: GET /v2/images?checksum= / ?os_hash_value=
-- find their few images instead of walking the catalog (108 ms at 103,000 images before).
CREATE INDEX IF NOT EXISTS images_checksum ON images (checksum);
CREATE INDEX IF NOT EXISTS images_os_hash_value ON images (os_hash_value);
CREATE TABLE IF NOT EXISTS image_properties (
  image_id TEXT NOT NULL,
  key      TEXT NOT NULL,
  value    TEXT NOT NULL,
  PRIMARY KEY (image_id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS image_properties_key_value ON image_properties (key, value, image_id);
CREATE TABLE IF NOT EXISTS image_tags (
  image_id TEXT NOT NULL,
  tag      TEXT NOT NULL,
  PRIMARY KEY (image_id, tag)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS image_tags_tag ON image_tags (tag, image_id);
CREATE TABLE IF NOT EXISTS image_members (
  image_id  TEXT NOT NULL,
  member_id TEXT NOT NULL,
  status    TEXT NOT NULL,
  PRIMARY KEY (image_id, member_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS image_members_member ON image_members (member_id, status, image_id);
-- Ids of purged images: never given to another image (OSSN-0075). No migration needed: created on open.
CREATE TABLE IF NOT EXISTS retired_image_ids (
  id         TEXT PRIMARY KEY,
  retired_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS image_words (
  image_id TEXT NOT NULL,
  word     TEXT NOT NULL,
  weight   INTEGER NOT NULL DEFAULT 1,
  PRIMARY KEY (image_id, word)
) WITHOUT ROWID;
`;

/** Columns added by schema version 2 (ALTERed into older files). */
const V2_COLUMNS: [string, string][] = [
  ['protected', 'INTEGER NOT NULL DEFAULT 0'],
  ['os_hidden', 'INTEGER NOT NULL DEFAULT 0'],
  ['checksum', 'TEXT'],
  ['os_hash_value', 'TEXT'],
];

interface Row {
  doc: string;
}

type RowParams = {
  id: string;
  revision: number;
  status: string;
  owner: string | null;
  name: string | null;
  visibility: string;
  disk_format: string | null;
  container_format: string | null;
  size: number | null;
  created_at: string;
  updated_at: string;
  has_pending: number;
  doc: string;
  protected: number;
  os_hidden: number;
  checksum: string | null;
  os_hash_value: string | null;
};

function toParams(doc: ImageDoc): RowParams {
  return {
    id: doc.id,
    revision: doc.revision,
    status: doc.status,
    owner: doc.owner ?? null,
    name: doc.name ?? null,
    visibility: doc.visibility,
    disk_format: doc.disk_format ?? null,
    container_format: doc.container_format ?? null,
    size: doc.size ?? null,
    created_at: doc.created_at,
    updated_at: doc.updated_at,
    has_pending: doc.outbox.length > 0 ? 1 : 0,
    doc: JSON.stringify(doc),
    protected: doc.protected ? 1 : 0,
    os_hidden: doc.os_hidden ? 1 : 0,
    checksum: doc.checksum ?? null,
    os_hash_value: doc.os_hash_value ?? null,
  };
}

/** The row's columns besides id and doc (what the list indexes are made of). */
const ROW_COLUMNS = ['revision', 'status', 'owner', 'name', 'visibility', 'disk_format', 'container_format', 'size', 'created_at', 'updated_at', 'has_pending', 'protected', 'os_hidden', 'checksum', 'os_hash_value'] as const;
type RowColumn = (typeof ROW_COLUMNS)[number];

/** Images whose side rows are remembered (sideRows): the ones being written now, and then some. */
const SIDE_ROWS_REMEMBERED = 10_000;

/** Everything the side tables are made of, as one comparable string. */
function sideRowsKey(doc: ImageDoc): string {
  return JSON.stringify([doc.properties, doc.tags, (doc.members ?? []).map((m) => [m.member_id, m.status]), [...weightedWords(doc)]]);
}

function isPrimaryKeyViolation(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE';
}

export class SqliteManifestStore implements ManifestStore {
  private readonly db: Database.Database;
  /** Writes resolve once on disk (one fdatasync off the event loop for all made meanwhile). */
  readonly commits: WalGroupCommit;
  private readonly stmts: {
    insert: Database.Statement<RowParams>;
    get: Database.Statement<[string], Row>;
    current: Database.Statement<[string], Record<RowColumn, unknown>>;
    writeOutbox: Database.Statement<{ id: string; doc: string; has_pending: number }>;
    pending: Database.Statement<[string, number], Row>;
    purge: Database.Statement<[string]>;
    retire: Database.Statement<[string, string]>;
    retired: Database.Statement<[string], unknown>;
    deleteProperties: Database.Statement<[string]>;
    deleteTags: Database.Statement<[string]>;
    deleteMembers: Database.Statement<[string]>;
    insertProperty: Database.Statement<[string, string, string]>;
    insertTag: Database.Statement<[string, string]>;
    insertMember: Database.Statement<[string, string, string]>;
  };
  private readonly search: SqliteSearchIndex;
  private readonly driveMax: number | null;
  private readonly recentCounts = new Map<string, { at: number; n: number }>();
  private readonly listCache = new Map<string, Database.Statement<unknown[], Row>>();
  /** replace's UPDATEs, by the columns they set (a handful of sets occur: the pipeline's, PATCH's). */
  private readonly updates = new Map<string, Database.Statement<RowParams>>();
  /**
   * What the side tables hold for an image, as of the revision this connection wrote last
   * (`key`: its properties, tags, members and words). A replace of that very revision that
   * changes none of them leaves the side rows alone: most writes (the pipeline's) change only
   * the status and stages, and rewriting ~10 rows and their index pages each time was most of
   * a write's cost. Revisions are compare-and-set, so the row at `revision` is this write's.
   */
  private readonly sideRows = new Map<string, { revision: number; key: string }>();
  /** True when it wrote (some of the events were still in the outbox). */
  private readonly ackTx: (id: string, eventIds: string[]) => boolean;
  private readonly createTx: (doc: ImageDoc) => void;
  private readonly replaceTx: (doc: ImageDoc, expected: number) => boolean;
  private readonly purgeTx: (id: string) => void;

  constructor(opts: SqliteManifestStoreOptions) {
    this.db = new Database(opts.path);
    const version = Number(this.db.pragma('user_version', { simple: true }));
    if (version > SCHEMA_VERSION) {
      // Written by a newer PIR: this code would miss what that one keeps (retired ids, words), and its writes would go unseen by it.
      this.db.close();
      throw new StartupError(`${opts.path} has schema version ${version}, newer than this PIR's ${SCHEMA_VERSION}: a newer PIR wrote it; run that version (or a later one) on this PIR_DATA_DIR`);
    }
    this.db.pragma(`busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs ?? 5000))}`);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL'); // until the schema is set up; then group commit
    // 64 MiB of page cache instead of SQLite's 2 MiB: a list or search at 100,000 images probes
    // indexes at random, and each page missed is a read from the OS (measured: half the CPU of a
    // 9,000-candidate search went to re-reading pages).
    this.db.pragma('cache_size = -65536');
    this.db.exec(SCHEMA);
    this.addMissingColumns();
    this.db.exec(LIST_SCHEMA);
    SqliteSearchIndex.addWeightColumn(this.db);
    this.db.exec(SEARCH_SCHEMA);
    this.search = new SqliteSearchIndex(this.db);
    this.driveMax = opts.driveMax ?? null;
    const cols = 'id, revision, status, owner, name, visibility, disk_format, container_format, size, created_at, updated_at, has_pending, doc, protected, os_hidden, checksum, os_hash_value';
    this.stmts = {
      insert: this.db.prepare(`INSERT INTO images (${cols}) VALUES (@id, @revision, @status, @owner, @name, @visibility, @disk_format, @container_format, @size, @created_at, @updated_at, @has_pending, @doc, @protected, @os_hidden, @checksum, @os_hash_value)`),
      get: this.db.prepare('SELECT doc FROM images WHERE id = ?'),
      current: this.db.prepare(`SELECT ${ROW_COLUMNS.join(', ')} FROM images WHERE id = ?`),
      writeOutbox: this.db.prepare('UPDATE images SET doc = @doc, has_pending = @has_pending WHERE id = @id'),
      pending: this.db.prepare('SELECT doc FROM images WHERE has_pending = 1 AND updated_at < ? ORDER BY updated_at, id LIMIT ?'),
      purge: this.db.prepare('DELETE FROM images WHERE id = ?'),
      retire: this.db.prepare('INSERT OR IGNORE INTO retired_image_ids (id, retired_at) VALUES (?, ?)'),
      retired: this.db.prepare('SELECT 1 FROM retired_image_ids WHERE id = ?'),
      deleteProperties: this.db.prepare('DELETE FROM image_properties WHERE image_id = ?'),
      deleteTags: this.db.prepare('DELETE FROM image_tags WHERE image_id = ?'),
      deleteMembers: this.db.prepare('DELETE FROM image_members WHERE image_id = ?'),
      insertProperty: this.db.prepare('INSERT OR REPLACE INTO image_properties (image_id, key, value) VALUES (?, ?, ?)'),
      insertTag: this.db.prepare('INSERT OR IGNORE INTO image_tags (image_id, tag) VALUES (?, ?)'),
      insertMember: this.db.prepare('INSERT OR REPLACE INTO image_members (image_id, member_id, status) VALUES (?, ?, ?)'),
    };
    const ack = this.db.transaction((id: string, eventIds: string[]): boolean => {
      const row = this.stmts.get.get(id);
      if (!row) return false;
      const doc = JSON.parse(row.doc) as ImageDoc;
      const drop = new Set(eventIds);
      const outbox = doc.outbox.filter((e) => !drop.has(e.id));
      if (outbox.length === doc.outbox.length) return false;
      doc.outbox = outbox;
      this.stmts.writeOutbox.run({ id, doc: JSON.stringify(doc), has_pending: outbox.length > 0 ? 1 : 0 });
      return true;
    });
    this.ackTx = (id, eventIds) => ack.immediate(id, eventIds);
    const create = this.db.transaction((doc: ImageDoc) => {
      if (this.stmts.retired.get(doc.id)) throw new RetiredIdError(doc.id);
      this.stmts.insert.run(toParams(doc));
      this.writeSideRows(doc, false);
      this.rememberSideRows(doc, sideRowsKey(doc));
    });
    this.createTx = (doc) => create.immediate(doc);
    const replace = this.db.transaction((doc: ImageDoc, expected: number) => {
      const row = this.stmts.current.get(doc.id);
      if (!row || row.revision !== expected) return false;
      const params = toParams(doc);
      // Only the columns that changed: SQLite rewrites the entries of every index on a column
      // the UPDATE sets, even to the same value, and most writes (the pipeline's) change only
      // the status, updated_at and the document (measured: 7 WAL pages a write instead of 11).
      const changed = ROW_COLUMNS.filter((c) => row[c] !== params[c]);
      if (this.updateOf(changed).run(params).changes !== 1) return false;
      const key = sideRowsKey(doc);
      const known = this.sideRows.get(doc.id);
      if (known?.revision !== expected || known.key !== key) this.writeSideRows(doc, true);
      this.rememberSideRows(doc, key);
      return true;
    });
    this.replaceTx = (doc, expected) => replace.immediate(doc, expected);
    const purge = this.db.transaction((id: string) => {
      this.stmts.retire.run(id, new Date().toISOString());
      this.stmts.purge.run(id);
      this.deleteSideRows(id);
      this.sideRows.delete(id);
    });
    this.purgeTx = (id) => purge.immediate(id);
    this.migrate(opts.logger, opts.migrateLogEvery ?? MIGRATE_LOG_EVERY);
    this.commits = new WalGroupCommit(this.db, opts.path);
  }

  async create(doc: ImageDoc): Promise<void> {
    try {
      this.createTx(doc);
    } catch (err) {
      if (isPrimaryKeyViolation(err)) throw new ManifestConflictError(doc.id);
      throw err;
    }
    manifestWrites.inc({ kind: 'create', outcome: 'won' });
    await this.commits.durable();
  }

  async countByStatus(): Promise<Record<ImageStatus, number>> {
    const counts = Object.fromEntries(IMAGE_STATUSES.map((s) => [s, 0])) as Record<ImageStatus, number>;
    const rows = this.db.prepare('SELECT status, COUNT(*) AS n FROM images GROUP BY status').all() as { status: ImageStatus; n: number }[];
    for (const row of rows) counts[row.status] = row.n;
    return counts;
  }

  async countPendingEvents(): Promise<number> {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM images WHERE has_pending = 1').get() as { n: number }).n;
  }

  async ping(): Promise<void> {
    this.db.prepare('SELECT 1').get();
  }

  /**
   * Inserts many documents in one transaction (benchmarks and imports: the same rows and side
   * rows as create(), without a commit per document). Rejects, writing nothing, on a duplicate id.
   */
  async createMany(docs: ImageDoc[]): Promise<void> {
    try {
      this.db.transaction((all: ImageDoc[]) => {
        for (const doc of all) {
          this.stmts.insert.run(toParams(doc));
          this.writeSideRows(doc, false);
        }
      }).immediate(docs);
    } catch (err) {
      if (isPrimaryKeyViolation(err)) throw new ManifestConflictError('one of the documents');
      throw err;
    }
    await this.commits.durable();
  }

  async get(id: string): Promise<ImageDoc | null> {
    const row = this.stmts.get.get(id);
    return row ? (JSON.parse(row.doc) as ImageDoc) : null;
  }

  async list(query: ListQuery): Promise<ImageDoc[]> {
    // The page's ids in order, then each document by primary key: SQLite never sorts documents.
    return this.docsOf(this.pageIds(query));
  }

  async listIds(query: ListQuery): Promise<string[]> {
    return this.pageIds(query);
  }

  async getMany(ids: readonly string[]): Promise<ImageDoc[]> {
    return this.docsOf(ids);
  }

  private pageIds(query: ListQuery): string[] {
    const limit = Math.max(0, Math.floor(query.limit));
    if (limit === 0) return [];
    return this.idsOf(this.listSql(query), limit);
  }

  /** The documents of these ids, in this order (an id deleted meanwhile is left out). */
  private docsOf(ids: readonly string[]): ImageDoc[] {
    const docs: ImageDoc[] = [];
    for (const id of ids) {
      const row = this.stmts.get.get(id);
      if (row) docs.push(JSON.parse(row.doc) as ImageDoc);
    }
    return docs;
  }

  async count(query: ListQuery): Promise<number> {
    const { sql, params } = this.listSql({ ...query, after: undefined }, true);
    return (this.prepared(sql).get(...params) as unknown as { n: number }).n;
  }

  /**
   * sort=relevance, best first, equal scores in the list's order, after `from`. When the list
   * query can start from a small set (listSql's driving sets: a rare word, the words'
   * intersection, a tag, the caller's own images…) that set is scored and sorted in one query.
   * Otherwise the matches are many, and the page is read tier by tier: for each score that can
   * occur (core/search.ts possibleScores), best first, the list query with "score = s" until
   * the page is full: driven by the tier's images when the word index counts few
   * (SqliteSearchIndex.tierSql: an empty tier ends there), else walking the list index, where
   * a dense tier fills a page after a few rows; so the first page of `debian bookworm` (9,300
   * matches) reads ~25 rows of its best tier instead of scoring every match.
   */
  async rankedList(query: ListQuery, from?: RankedAfter): Promise<ImageDoc[]> {
    const search = query.search;
    if (!search) throw new Error('rankedList: the query has no search');
    const limit = Math.max(0, Math.floor(query.limit));
    if (limit === 0) return [];
    const whole = this.listSql({ ...query, after: undefined }, false, { best: true, from });
    let ids: string[];
    if (whole.driven) ids = this.idsOf(whole, limit);
    else {
      ids = [];
      const terms = this.search.termWeights(search);
      let walks = 0;
      for (const score of possibleScores(terms.perTerm)) {
        if (from && score > from.score) continue;
        const tier = this.listSql({ ...query, after: from && score === from.score ? from.after : undefined }, false, { tier: score, terms });
        // Sparse tiers, each walked through every match, cost more than scoring the matches once
        // (16 words: up to ~50 tiers): past a few walks, the whole page is read in one scoring.
        if (!tier.driven && ++walks > MAX_TIER_WALKS) {
          ids = this.idsOf(whole, limit);
          break;
        }
        ids.push(...this.idsOf(tier, limit - ids.length));
        if (ids.length >= limit) break;
      }
    }
    return this.docsOf(ids);
  }

  private idsOf(plan: ListPlan, limit: number): string[] {
    const read = (part: { sql: string; params: unknown[] }, n: number) => (this.prepared(part.sql).all(...part.params, n) as unknown as { id: string }[]).map((r) => r.id);
    if (!plan.segments) return read(plan, limit);
    // Segments are in the list's order and disjoint: read each until the page is full.
    const ids: string[] = [];
    for (const segment of plan.segments) {
      if (ids.length >= limit) break;
      ids.push(...read(segment, limit - ids.length));
    }
    return ids;
  }

  /** The query plan of list(query), for tests and diagnostics (are the indexes used?); a page read in segments lists each one's. */
  explainList(query: ListQuery): string[] {
    const plan = this.listSql(query);
    return (plan.segments ?? [plan]).flatMap(({ sql, params }) =>
      (this.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params, Math.max(1, query.limit)) as { detail: string }[]).map((r) => r.detail));
  }

  /** The UPDATE of these columns and the document, prepared once per set of columns. */
  private updateOf(columns: readonly RowColumn[]): Database.Statement<RowParams> {
    const key = columns.join(',');
    let statement = this.updates.get(key);
    if (!statement) {
      statement = this.db.prepare(`UPDATE images SET ${[...columns, 'doc'].map((c) => `${c} = @${c}`).join(', ')} WHERE id = @id`);
      if (this.updates.size >= 64) this.updates.clear(); // bounded, whatever mix of writes comes
      this.updates.set(key, statement);
    }
    return statement;
  }

  async replace(doc: ImageDoc, expectedRevision: number): Promise<boolean> {
    if (!this.replaceTx(doc, expectedRevision)) {
      manifestWrites.inc({ kind: 'update', outcome: 'lost' });
      return false;
    }
    manifestWrites.inc({ kind: 'update', outcome: 'won' });
    await this.commits.durable();
    return true;
  }

  async ackEvents(id: string, eventIds: string[]): Promise<void> {
    if (eventIds.length === 0) return;
    if (this.ackTx(id, eventIds)) manifestWrites.inc({ kind: 'ack', outcome: 'won' });
    await this.commits.durable();
  }

  async withPendingEvents(updatedBefore: string, limit: number): Promise<ImageDoc[]> {
    return this.stmts.pending.all(updatedBefore, Math.max(0, Math.floor(limit))).map((r) => JSON.parse(r.doc) as ImageDoc);
  }

  async findStale(statuses: ImageStatus[], updatedBefore: string, limit: number): Promise<ImageDoc[]> {
    if (statuses.length === 0) return [];
    const sql = `SELECT doc FROM images WHERE status IN (${statuses.map(() => '?').join(', ')}) AND updated_at < ? ORDER BY updated_at, id LIMIT ?`;
    return this.prepared(sql).all(...statuses, updatedBefore, Math.max(0, Math.floor(limit))).map((r) => JSON.parse(r.doc) as ImageDoc);
  }

  async purge(id: string): Promise<void> {
    this.purgeTx(id);
    await this.commits.durable();
  }

  async close(): Promise<void> {
    await this.commits.close();
    if (this.db.open) this.db.close();
  }

  /** The durability settings of this connection (for tests and diagnostics). */
  durability(): { journalMode: string; synchronous: number } {
    return {
      journalMode: String(this.db.pragma('journal_mode', { simple: true })),
      synchronous: Number(this.db.pragma('synchronous', { simple: true })),
    };
  }

  private rememberSideRows(doc: ImageDoc, key: string): void {
    this.sideRows.delete(doc.id); // re-insert: the map's order is least recently written first
    this.sideRows.set(doc.id, { revision: doc.revision, key });
    if (this.sideRows.size > SIDE_ROWS_REMEMBERED) this.sideRows.delete(this.sideRows.keys().next().value!);
  }

  /** `replacing`: the image had side rows; `rebuild`: rewrite its words even when they look unchanged (migration). */
  private writeSideRows(doc: ImageDoc, replacing: boolean, rebuild = false): void {
    if (replacing) this.deleteFilterRows(doc.id);
    for (const [key, value] of Object.entries(doc.properties)) this.stmts.insertProperty.run(doc.id, key, value);
    for (const tag of doc.tags) this.stmts.insertTag.run(doc.id, tag);
    for (const m of doc.members ?? []) this.stmts.insertMember.run(doc.id, m.member_id, m.status);
    this.search.write(doc, rebuild ? 'rebuild' : replacing ? 'replace' : 'new');
  }

  private deleteFilterRows(id: string): void {
    this.stmts.deleteProperties.run(id);
    this.stmts.deleteTags.run(id);
    this.stmts.deleteMembers.run(id);
  }

  private deleteSideRows(id: string): void {
    this.deleteFilterRows(id);
    this.search.remove(id);
  }

  /** Files written before schema version 2 lack the list columns. */
  private addMissingColumns(): void {
    const have = new Set((this.db.prepare('PRAGMA table_info(images)').all() as { name: string }[]).map((c) => c.name));
    for (const [name, type] of V2_COLUMNS) {
      if (!have.has(name)) this.db.exec(`ALTER TABLE images ADD COLUMN ${name} ${type}`);
    }
  }

  /**
   * Fills the new columns and side tables of an older file from its documents, once, in one
   * transaction (start-up waits for it: ~75 s at 100,000 images), logging how many documents it
   * rewrites, its progress every `every` of them, and the time it took.
   */
  private migrate(logger: Pick<Logger, 'info'> | undefined, every: number): void {
    const version = Number(this.db.pragma('user_version', { simple: true }));
    if (version >= SCHEMA_VERSION) return;
    const started = performance.now();
    const done = this.db.transaction((): number => {
      const total = (this.db.prepare('SELECT count(*) AS n FROM images').get() as { n: number }).n;
      const log = total > 0 ? logger : undefined; // a new, empty file: nothing worth a line
      log?.info({ from: version, to: SCHEMA_VERSION, documents: total }, `manifest: upgrading the SQLite schema from version ${version} to ${SCHEMA_VERSION}: rewriting ${total} documents' columns, side rows and words (start-up waits until it is done)`);
      flushLog(log);
      const update = this.db.prepare('UPDATE images SET protected = @protected, os_hidden = @os_hidden, checksum = @checksum, os_hash_value = @os_hash_value WHERE id = @id');
      let done = 0;
      for (const row of this.db.prepare('SELECT doc FROM images').all() as Row[]) {
        const doc = JSON.parse(row.doc) as ImageDoc;
        const p = toParams(doc);
        update.run({ id: p.id, protected: p.protected, os_hidden: p.os_hidden, checksum: p.checksum, os_hash_value: p.os_hash_value });
        this.writeSideRows(doc, true, true);
        if (++done % every === 0 && done < total) {
          log?.info({ done, documents: total, elapsed_s: Math.round((performance.now() - started) / 100) / 10 }, `manifest: schema upgrade: ${done} of ${total} documents`);
          flushLog(log);
        }
      }
      this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
      return done;
    }).immediate();
    if (done > 0) {
      const seconds = (performance.now() - started) / 1000;
      logger?.info({ from: version, to: SCHEMA_VERSION, documents: done, elapsed_s: Math.round(seconds * 10) / 10 }, `manifest: schema upgraded to version ${SCHEMA_VERSION}: ${done} documents in ${seconds.toFixed(1)} s`);
    }
  }

  /**
   * SQL for list(): the page's ids, shaped so SQLite never sorts whole documents: the ids come
   * from the covering index images_list_created (newest first by default: a walk down the
   * index that stops at the limit), and list() then reads only those rows' documents. Filters on the
   * side tables are index probes per row (EXISTS); when one of them, or the caller's own and
   * shared images, is a small set, the walk starts from that set instead (CROSS JOIN fixes the
   * join order), so a rare tag costs its few rows, not a walk through every image. Columns
   * prefixed with `+` are kept off their single-column indexes on purpose: used to drive, they
   * would make SQLite sort the whole matching set. LIMIT is the last parameter.
   */
  private listSql(query: ListQuery, count = false, ranking?: Ranking): ListPlan {
    const access = listAccess(query);
    // Walking the index newest first costs about limit × images ÷ matches rows; driving from a
    // set costs its size: a long page (the relevance window of 1,000) is worth a larger set.
    const driveMax = this.driveMax ?? Math.min(DRIVE_MAX_LONG_PAGE, Math.max(DRIVE_MAX, DRIVE_PER_ROW * query.limit));
    let driver: { from: string; params: unknown[]; rows: number; wholeSearch?: boolean } | null = null;
    const consider = (from: string, params: unknown[], wholeSearch = false, max = driveMax, count = this.boundedCount.bind(this)) => {
      if (ranking && 'tier' in ranking) return; // rankedList found no small set already: only the tier's own (below)
      const rows = count(from, params, max);
      if (rows <= max && (!driver || rows < driver.rows)) driver = { from, params, rows, wholeSearch };
    };
    for (const tag of query.tags ?? []) consider('SELECT image_id AS did FROM image_tags WHERE tag = ?', [tag]);
    for (const [key, value] of Object.entries(query.properties ?? {})) consider('SELECT image_id AS did FROM image_properties WHERE key = ? AND value = ?', [key, value]);
    if (query.search) {
      for (const word of query.search.words) consider('SELECT image_id AS did FROM image_words WHERE word = ?', [word]);
      consider('SELECT DISTINCT image_id AS did FROM image_words WHERE word >= ? AND word < ?', [query.search.prefix, prefixEnd(query.search.prefix)]);
      // Every word alone is common: their intersection (FTS5) may still be small (`debian noble`:
      // none of 16,700 and 5,500). When it holds the prefix too, its rows need no per-word probe.
      // Counted to a lower bound: a larger intersection is dense enough for the walk, and
      // counting it costs a merge of the posting lists up to that many matches.
      const fts = driver ? null : this.search.matchExpression(query.search);
      if (fts) consider(SqliteSearchIndex.matchSql(), [fts.match], fts.complete, this.driveMax ?? Math.min(DRIVE_MAX_LONG_PAGE, FTS_DRIVE_PER_ROW * query.limit));
    }
    if (ranking && 'tier' in ranking && query.search) {
      // The tier's images from the word index: a small tier drives the query, an empty one ends
      // it after that index range; a tier larger than TIER_DRIVE_PER_ROW × limit is dense enough to walk.
      const tier = SqliteSearchIndex.tierSql(query.search, ranking.terms, ranking.tier);
      if (tier) {
        const max = this.driveMax ?? TIER_DRIVE_PER_ROW * Math.max(1, query.limit);
        const rows = this.boundedCount(tier.sql, tier.params, max);
        if (rows <= max) driver = { from: tier.sql, params: tier.params, rows };
      }
    }
    if (query.galleryIn && query.galleryIn.length > 0) {
      consider(`SELECT image_id AS did FROM image_properties WHERE key = ? AND value IN (${marks(query.galleryIn)})`, [GALLERY_PROPERTY, ...query.galleryIn]);
    }
    if (access.anyOf && access.anyOf.length > 0) {
      // What the caller may see, as one set (its own images, a membership's, a shared gallery's,
      // and public or community ones when the terms name them). With public or community images
      // in it the set is large for a cloud that has many, and those are often the newest: it
      // drives only when reading it is cheaper than the walk of the newest-first index would be
      // if the caller's images were spread evenly (limit × images ÷ set), so a project that sees
      // few, old images reads them instead of walking past everyone else's (103,000 images: a
      // page cost such a project 34-309 ms, and embedded mode's other requests waited).
      const parts: string[] = [];
      const params: unknown[] = [];
      const byVisibility = access.anyOf.some((t) => t.kind === 'visibility');
      for (const term of access.anyOf) {
        if (term.kind === 'visibility') {
          parts.push(`SELECT id AS did FROM images WHERE visibility IN (${marks(term.visibilities)})`);
          params.push(...term.visibilities);
        } else if (term.kind === 'owner') {
          const vis = access.visibilityIn;
          parts.push(`SELECT id AS did FROM images WHERE owner = ?${vis ? ` AND visibility IN (${marks(vis)})` : ''}`);
          params.push(term.owner, ...(vis ?? []));
        } else if (term.kind === 'member') {
          parts.push(`SELECT image_id AS did FROM image_members WHERE member_id = ? AND status IN (${marks(term.statuses)})`);
          params.push(term.member, ...term.statuses);
        } else if (term.kind === 'gallery') {
          parts.push(`SELECT image_id AS did FROM image_properties WHERE key = ? AND value IN (${marks(term.galleries)})`);
          params.push(GALLERY_PROPERTY, ...term.galleries);
        }
      }
      const max = byVisibility ? this.visibleSetMax(query, driveMax) : driveMax;
      // A project's visible set changes slowly: its size, a plan's estimate, is counted once a while.
      if (max !== null) consider(parts.join(' UNION '), params, false, max, byVisibility ? this.recentCount.bind(this) : undefined);
    }

    const clauses: string[] = [];
    const params: unknown[] = [];
    if (access.visibilityIn) {
      clauses.push(`+images.visibility IN (${marks(access.visibilityIn)})`);
      params.push(...access.visibilityIn);
    }
    if (access.anyOf) {
      const ors = access.anyOf.map((term) => {
        switch (term.kind) {
          case 'owner':
            params.push(term.owner);
            return '+images.owner = ?';
          case 'visibility':
            params.push(...term.visibilities);
            return `+images.visibility IN (${marks(term.visibilities)})`;
          case 'member':
            params.push(term.member, ...term.statuses);
            return `(+images.visibility = 'shared' AND EXISTS (SELECT 1 FROM image_members m WHERE m.image_id = images.id AND m.member_id = ? AND m.status IN (${marks(term.statuses)})))`;
          case 'gallery':
            params.push(GALLERY_PROPERTY, ...term.galleries);
            return `EXISTS (SELECT 1 FROM image_properties gs WHERE gs.image_id = images.id AND gs.key = ? AND gs.value IN (${marks(term.galleries)}))`;
        }
      });
      clauses.push(ors.length ? `(${ors.join(' OR ')})` : '0');
    }
    for (const [field, value] of Object.entries(query.where) as [keyof ListQuery['where'], unknown][]) {
      if (value === undefined) continue;
      const column = WHERE_COLUMNS[field];
      if (!column) throw new Error(`list: cannot filter on ${field}`);
      // Ids, names and hashes are selective: let their indexes serve them.
      const col = INDEXED_FILTERS.has(field) ? `images.${column}` : `+images.${column}`;
      if (Array.isArray(value)) {
        clauses.push(value.length === 0 ? '0' : `${col} IN (${marks(value)})`);
        params.push(...value);
      } else {
        clauses.push(`${col} = ?`);
        params.push(typeof value === 'boolean' ? (value ? 1 : 0) : value);
      }
    }
    if (query.sizeMin !== undefined) {
      clauses.push('+images.size >= ?');
      params.push(query.sizeMin);
    }
    if (query.sizeMax !== undefined) {
      clauses.push('+images.size <= ?');
      params.push(query.sizeMax);
    }
    for (const t of query.times ?? []) {
      const col = t.field === 'created_at' ? 'images.created_at' : '+images.updated_at';
      const parts: string[] = [];
      if (t.gte !== undefined) {
        parts.push(`${col} >= ?`);
        params.push(t.gte);
      }
      if (t.lt !== undefined) {
        parts.push(`${col} < ?`);
        params.push(t.lt);
      }
      const range = parts.length ? parts.join(' AND ') : '1';
      clauses.push(t.negate ? `NOT (${range})` : `(${range})`);
    }
    for (const [key, value] of Object.entries(query.properties ?? {})) {
      clauses.push('EXISTS (SELECT 1 FROM image_properties p WHERE p.image_id = images.id AND p.key = ? AND p.value = ?)');
      params.push(key, value);
    }
    for (const tag of query.tags ?? []) {
      clauses.push('EXISTS (SELECT 1 FROM image_tags t WHERE t.image_id = images.id AND t.tag = ?)');
      params.push(tag);
    }
    const searchDriven = (driver as { wholeSearch?: boolean } | null)?.wholeSearch === true;
    if (query.search && !searchDriven) {
      for (const word of query.search.words) {
        clauses.push('EXISTS (SELECT 1 FROM image_words w WHERE w.image_id = images.id AND w.word = ?)');
        params.push(word);
      }
      clauses.push('EXISTS (SELECT 1 FROM image_words w WHERE w.image_id = images.id AND w.word >= ? AND w.word < ?)');
      params.push(query.search.prefix, prefixEnd(query.search.prefix));
    }
    if (query.galleryIn) {
      if (query.galleryIn.length === 0) clauses.push('0');
      else {
        clauses.push(`EXISTS (SELECT 1 FROM image_properties g WHERE g.image_id = images.id AND g.key = ? AND g.value IN (${marks(query.galleryIn)}))`);
        params.push(GALLERY_PROPERTY, ...query.galleryIn);
      }
    }
    const sort = normalizeSort(query.sort);
    const score = ranking && query.search ? SqliteSearchIndex.scoreSql(query.search) : null;
    if (score && ranking && 'tier' in ranking) {
      clauses.push(`${score.expr} = ?`);
      params.push(...score.params, ranking.tier);
    }
    if (score && ranking && 'best' in ranking && ranking.from) {
      // After `from` in the ranking: a lower score, or the same score after it in the list's order.
      const { clause, values } = keysetSql(sort, ranking.from.after);
      clauses.push(`(${score.expr} < ? OR (${score.expr} = ? AND ${clause}))`);
      params.push(...score.params, ranking.from.score, ...score.params, ranking.from.score, ...values);
    }
    const d = driver as { from: string; params: unknown[] } | null;
    const source = d ? `(${d.from}) AS d CROSS JOIN images INDEXED BY images_list_id ON images.id = d.did` : 'images';
    const order = (prefix: string) => sort.map((s) => `${prefix}${SORT_COLUMNS[s.key]} ${s.dir === 'desc' ? 'DESC' : 'ASC'}`).join(', ');
    const best = score && ranking && 'best' in ranking;
    const orderBy = best ? `${score.expr} DESC, ${order('images.')}` : order('images.');
    const select = (conds: string[]) => {
      const where = conds.length ? `WHERE ${conds.join(' AND ')}` : '';
      return count ? `SELECT count(*) AS n FROM ${source} ${where}` : `SELECT images.id FROM ${source} ${where} ORDER BY ${orderBy} LIMIT ?`;
    };
    const tail = best && !count ? score.params : [];
    if (query.after && !count && !ranking && !d && SEGMENTED_SORTS.has(sort[0]!.key)) {
      // After a marker, sorted by a column whose index matches the whole sort: the rows after it
      // as a few ranges, each read in order from that index up to the limit (keysetSegments).
      const segments = keysetSegments(sort, query.after).map((seg) => ({ sql: select([...clauses, ...seg.conds]), params: [...params, ...seg.values] }));
      return { ...segments[0]!, driven: false, segments };
    }
    if (query.after) {
      const { clause, values } = keysetSql(sort, query.after);
      clauses.push(clause);
      params.push(...values);
    }
    return { sql: select(clauses), params: [...(d ? d.params : []), ...params, ...tail], driven: d !== null };
  }

  /** min(rows of `sql`, max + 1): how big a candidate driving set is, at the cost of at most that many index entries. */
  /**
   * The largest visible set (with public or community images in it) worth driving a page from:
   * none for an administrator (who sees nearly everything) or a catalog of at most DRIVE_MAX
   * images (the walk is short); else √(limit × images), where reading the set costs what the
   * walk would if the caller's images were spread evenly.
   */
  private visibleSetMax(query: ListQuery, driveMax: number): number | null {
    if (this.driveMax !== null) return this.driveMax;
    if (query.scope.admin) return null;
    const images = this.imageCount();
    return images <= DRIVE_MAX ? null : Math.min(driveMax, Math.floor(Math.sqrt(Math.max(1, query.limit) * images)));
  }

  /** boundedCount, remembered for IMAGE_COUNT_MS per query (at most 1,000 of them). */
  private recentCount(sql: string, params: unknown[], max: number): number {
    const key = `${max}\u0000${sql}\u0000${JSON.stringify(params)}`;
    const now = Date.now();
    const known = this.recentCounts.get(key);
    if (known && now - known.at <= IMAGE_COUNT_MS) return known.n;
    if (this.recentCounts.size >= 1000) this.recentCounts.clear();
    const n = this.boundedCount(sql, params, max);
    this.recentCounts.set(key, { at: now, n });
    return n;
  }

  /** How many images there are, counted at most every IMAGE_COUNT_MS (a plan's estimate, not an answer). */
  private imageCount(): number {
    return this.recentCount('SELECT id FROM images', [], Number.MAX_SAFE_INTEGER - 1);
  }

  private boundedCount(sql: string, params: unknown[], max: number): number {
    const row = this.prepared(`SELECT count(*) AS n FROM (${sql} LIMIT ${max + 1})`).get(...params) as unknown as { n: number };
    return row.n;
  }

  private prepared(sql: string): Database.Statement<unknown[], Row> {
    let stmt = this.listCache.get(sql);
    if (!stmt) {
      stmt = this.db.prepare<unknown[], Row>(sql);
      if (this.listCache.size >= 256) this.listCache.clear();
      this.listCache.set(sql, stmt);
    }
    return stmt;
  }
}

/**
 * Sorts whose first key has an index matching the whole normalized sort (images_list_name,
 * images_list_updated: the key, created_at, id; walked forwards or backwards), read after a
 * marker in segments (keysetSegments) instead of keysetSql's OR, which SQLite plans as a
 * MULTI-INDEX OR and a sort of every row after the marker (140-212 ms a page at 103,000 images).
 */
const SEGMENTED_SORTS = new Set<SortKey>(['name', 'updated_at']);

/** Sort columns that may hold NULL (NULLs sort first ascending, last descending). */
const NULLABLE_SORT_COLUMNS = new Set<SortKey>(['name', 'disk_format', 'container_format', 'size']);

/**
 * "Strictly after this row" in the order of `sort`, as disjoint conditions in that order: rows
 * with the same k1…k(n-1) and a later kn first, then the same k1…k(n-2) and a later k(n-1), …,
 * then a later k1 (a later value descending: a smaller one, then NULL). Each is equalities on a
 * prefix of the sort and one range, which an index on the sort's columns reads in order, so a
 * page reads its rows and stops.
 */
function keysetSegments(sort: SortSpec[], after: SortValue[]): { conds: string[]; values: unknown[] }[] {
  if (after.length !== sort.length) throw new Error(`list: the keyset has ${after.length} values for ${sort.length} sort keys`);
  const segments: { conds: string[]; values: unknown[] }[] = [];
  for (let i = sort.length - 1; i >= 0; i--) {
    const { conds, values } = equalPrefix(sort, after, i);
    const key = sort[i]!.key;
    const col = `images.${SORT_COLUMNS[key]}`;
    const v = after[i];
    if (sort[i]!.dir === 'asc') {
      if (v === null) segments.push({ conds: [...conds, `${col} IS NOT NULL`], values });
      else segments.push({ conds: [...conds, `${col} > ?`], values: [...values, v] });
    } else if (v !== null) {
      segments.push({ conds: [...conds, `${col} < ?`], values: [...values, v] });
      if (NULLABLE_SORT_COLUMNS.has(key)) segments.push({ conds: [...conds, `${col} IS NULL`], values });
    }
  }
  return segments.length ? segments : [{ conds: ['0'], values: [] }];
}

/** The rows whose first `n` sort keys equal the marker's (IS NULL for a NULL value). */
function equalPrefix(sort: SortSpec[], after: SortValue[], n: number): { conds: string[]; values: unknown[] } {
  const conds: string[] = [];
  const values: unknown[] = [];
  for (let j = 0; j < n; j++) {
    const col = `images.${SORT_COLUMNS[sort[j]!.key]}`;
    if (after[j] === null) conds.push(`${col} IS NULL`);
    else {
      conds.push(`${col} = ?`);
      values.push(after[j]);
    }
  }
  return { conds, values };
}

/**
 * "Strictly after this row" in the order of `sort` (NULLs first ascending, last descending):
 * the usual lexicographic expansion, (k1 after v1) OR (k1 = v1 AND k2 after v2) OR …
 */
function keysetSql(sort: SortSpec[], after: SortValue[]): { clause: string; values: unknown[] } {
  if (after.length !== sort.length) throw new Error(`list: the keyset has ${after.length} values for ${sort.length} sort keys`);
  const values: unknown[] = [];
  const ors: string[] = [];
  for (let i = 0; i < sort.length; i++) {
    const col = `images.${SORT_COLUMNS[sort[i]!.key]}`;
    const v = after[i];
    const desc = sort[i]!.dir === 'desc';
    if (v === null && desc) continue; // nothing sorts after a NULL descending
    const prefix = equalPrefix(sort, after, i);
    const ands = prefix.conds;
    values.push(...prefix.values);
    if (v === null) ands.push(`${col} IS NOT NULL`);
    else {
      ands.push(desc ? `(${col} < ? OR ${col} IS NULL)` : `${col} > ?`);
      values.push(v);
    }
    ors.push(`(${ands.join(' AND ')})`);
  }
  return { clause: ors.length ? `(${ors.join(' OR ')})` : '0', values };
}
