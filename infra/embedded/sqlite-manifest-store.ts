/**
 * ManifestStore on SQLite (better-sqlite3): the embedded mode's manifest.
 *
 * One row per image. The JSON document is the truth; the other columns are copies of the
 * fields the store filters and sorts on, rewritten from the document on every write so they
 * never drift. WAL + synchronous=FULL: a write that returned survives a crash or power loss.
 * better-sqlite3 is synchronous, so each call runs to completion on the event loop; writes
 * that read first (ackEvents) run in an IMMEDIATE transaction so another process sharing the
 * file cannot interleave.
 */
import Database from 'better-sqlite3';
import { IMAGE_STATUSES, type ImageDoc, type ImageStatus } from '../../schemas/image.js';
import { ManifestConflictError } from '../../core/ports.js';
import type { ListQuery, ManifestStore, SortKey } from '../../core/ports.js';

export interface SqliteManifestStoreOptions {
  /** Database file path, or ':memory:' (tests only: nothing survives the process). */
  path: string;
  /** How long a writer waits for another process's lock before failing (default 5000 ms). */
  busyTimeoutMs?: number;
}

/** Columns the store filters or sorts on, besides the document. Keys are ListQuery names. */
const COLUMNS: Record<SortKey | 'owner' | 'visibility', string> = {
  id: 'id',
  status: 'status',
  owner: 'owner',
  name: 'name',
  visibility: 'visibility',
  disk_format: 'disk_format',
  container_format: 'container_format',
  size: 'size',
  created_at: 'created_at',
  updated_at: 'updated_at',
};

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
  doc              TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS images_status_updated ON images (status, updated_at);
CREATE INDEX IF NOT EXISTS images_pending_updated ON images (updated_at) WHERE has_pending = 1;
CREATE INDEX IF NOT EXISTS images_created ON images (created_at, id);
CREATE INDEX IF NOT EXISTS images_updated ON images (updated_at, id);
CREATE INDEX IF NOT EXISTS images_owner ON images (owner);
CREATE INDEX IF NOT EXISTS images_name ON images (name);
CREATE INDEX IF NOT EXISTS images_visibility ON images (visibility);
`;

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
  };
}

function isPrimaryKeyViolation(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE';
}

export class SqliteManifestStore implements ManifestStore {
  private readonly db: Database.Database;
  private readonly stmts: {
    insert: Database.Statement<RowParams>;
    get: Database.Statement<[string], Row>;
    replace: Database.Statement<RowParams & { expected: number }>;
    writeOutbox: Database.Statement<{ id: string; doc: string; has_pending: number }>;
    pending: Database.Statement<[string, number], Row>;
    purge: Database.Statement<[string]>;
  };
  private readonly listCache = new Map<string, Database.Statement<unknown[], Row>>();
  private readonly ackTx: (id: string, eventIds: string[]) => void;

  constructor(opts: SqliteManifestStoreOptions) {
    this.db = new Database(opts.path);
    this.db.pragma(`busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs ?? 5000))}`);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.exec(SCHEMA);
    const cols = 'id, revision, status, owner, name, visibility, disk_format, container_format, size, created_at, updated_at, has_pending, doc';
    this.stmts = {
      insert: this.db.prepare(`INSERT INTO images (${cols}) VALUES (@id, @revision, @status, @owner, @name, @visibility, @disk_format, @container_format, @size, @created_at, @updated_at, @has_pending, @doc)`),
      get: this.db.prepare('SELECT doc FROM images WHERE id = ?'),
      replace: this.db.prepare(`UPDATE images SET revision = @revision, status = @status, owner = @owner, name = @name,
        visibility = @visibility, disk_format = @disk_format, container_format = @container_format, size = @size,
        created_at = @created_at, updated_at = @updated_at, has_pending = @has_pending, doc = @doc
        WHERE id = @id AND revision = @expected`),
      writeOutbox: this.db.prepare('UPDATE images SET doc = @doc, has_pending = @has_pending WHERE id = @id'),
      pending: this.db.prepare('SELECT doc FROM images WHERE has_pending = 1 AND updated_at < ? ORDER BY updated_at, id LIMIT ?'),
      purge: this.db.prepare('DELETE FROM images WHERE id = ?'),
    };
    const ack = this.db.transaction((id: string, eventIds: string[]) => {
      const row = this.stmts.get.get(id);
      if (!row) return;
      const doc = JSON.parse(row.doc) as ImageDoc;
      const drop = new Set(eventIds);
      const outbox = doc.outbox.filter((e) => !drop.has(e.id));
      if (outbox.length === doc.outbox.length) return;
      doc.outbox = outbox;
      this.stmts.writeOutbox.run({ id, doc: JSON.stringify(doc), has_pending: outbox.length > 0 ? 1 : 0 });
    });
    this.ackTx = (id, eventIds) => ack.immediate(id, eventIds);
  }

  async create(doc: ImageDoc): Promise<void> {
    try {
      this.stmts.insert.run(toParams(doc));
    } catch (err) {
      if (isPrimaryKeyViolation(err)) throw new ManifestConflictError(doc.id);
      throw err;
    }
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

  async get(id: string): Promise<ImageDoc | null> {
    const row = this.stmts.get.get(id);
    return row ? (JSON.parse(row.doc) as ImageDoc) : null;
  }

  async list(query: ListQuery): Promise<ImageDoc[]> {
    const clauses: string[] = [];
    const params: unknown[] = [];
    for (const [field, value] of Object.entries(query.where)) {
      if (value === undefined) continue;
      const col = COLUMNS[field as keyof typeof COLUMNS];
      if (!col) throw new Error(`list: cannot filter on ${field}`);
      if (Array.isArray(value)) {
        if (value.length === 0) {
          clauses.push('0');
        } else {
          clauses.push(`${col} IN (${value.map(() => '?').join(', ')})`);
          params.push(...value);
        }
      } else {
        clauses.push(`${col} = ?`);
        params.push(value);
      }
    }
    const sortCol = COLUMNS[query.sortKey];
    if (!sortCol) throw new Error(`list: cannot sort on ${query.sortKey}`);
    const desc = query.sortDir === 'desc';
    const dir = desc ? 'DESC' : 'ASC';
    if (query.after) {
      // Order: NULLs first ascending, last descending (SQLite's and MongoDB's default), ties by id.
      const { value, id } = query.after;
      const idCmp = desc ? '<' : '>';
      if (sortCol === 'id') {
        clauses.push(`id ${idCmp} ?`);
        params.push(id);
      } else if (value === null) {
        clauses.push(desc ? `(${sortCol} IS NULL AND id < ?)` : `((${sortCol} IS NULL AND id > ?) OR ${sortCol} IS NOT NULL)`);
        params.push(id);
      } else {
        const cmp = desc ? '<' : '>';
        clauses.push(`(${sortCol} ${cmp} ? OR (${sortCol} = ? AND id ${idCmp} ?)${desc ? ` OR ${sortCol} IS NULL` : ''})`);
        params.push(value, value, id);
      }
    }
    const where = clauses.length ? `WHERE ${clauses.join(' AND ')}` : '';
    const order = sortCol === 'id' ? `id ${dir}` : `${sortCol} ${dir}, id ${dir}`;
    const sql = `SELECT doc FROM images ${where} ORDER BY ${order} LIMIT ?`;
    params.push(Math.max(0, Math.floor(query.limit)));
    return this.prepared(sql).all(...params).map((r) => JSON.parse(r.doc) as ImageDoc);
  }

  async replace(doc: ImageDoc, expectedRevision: number): Promise<boolean> {
    return this.stmts.replace.run({ ...toParams(doc), expected: expectedRevision }).changes === 1;
  }

  async ackEvents(id: string, eventIds: string[]): Promise<void> {
    if (eventIds.length === 0) return;
    this.ackTx(id, eventIds);
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
    this.stmts.purge.run(id);
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  /** The durability settings of this connection (for tests and diagnostics). */
  durability(): { journalMode: string; synchronous: number } {
    return {
      journalMode: String(this.db.pragma('journal_mode', { simple: true })),
      synchronous: Number(this.db.pragma('synchronous', { simple: true })),
    };
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
