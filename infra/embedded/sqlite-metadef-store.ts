/**
 * MetadefStore on SQLite (embedded mode): one row per namespace holding the whole namespace as
 * JSON, plus the columns the compare-and-set and the name's uniqueness need.
 */
import Database from 'better-sqlite3';
import { WalGroupCommit } from './wal-group-commit.js';
import { MetadefNameTakenError, type MetadefNamespace, type MetadefStore, type ResourceType } from '../../core/metadef-ports.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS metadef_namespaces (
  id TEXT PRIMARY KEY, namespace TEXT NOT NULL UNIQUE, revision INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS metadef_resource_types (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
`;

/** Only the name's UNIQUE (a duplicate id is a caller's bug, not a taken name). */
function isNameTaken(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === 'SQLITE_CONSTRAINT_UNIQUE';
}

type DocRow = { doc: string };

export class SqliteMetadefStore implements MetadefStore {
  private readonly db: Database.Database;
  /** Writes resolve once on disk, one fdatasync for all those made meanwhile. */
  private readonly commits: WalGroupCommit;
  private readonly insertNs: Database.Statement<[string, string, number, string]>;
  private readonly getNs: Database.Statement<[string], DocRow>;
  private readonly listNs: Database.Statement<[], DocRow>;
  private readonly casNs: Database.Statement<[string, number, string, string, number]>;
  private readonly deleteNs: Database.Statement<[string]>;
  private readonly listTypes: Database.Statement<[], DocRow>;
  private readonly insertType: Database.Statement<[string, string]>;

  constructor(opts: { path: string }) {
    this.db = new Database(opts.path);
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('journal_mode = WAL');
    this.db.exec(SCHEMA);
    this.insertNs = this.db.prepare('INSERT INTO metadef_namespaces (id, namespace, revision, doc) VALUES (?, ?, ?, ?)');
    this.getNs = this.db.prepare('SELECT doc FROM metadef_namespaces WHERE namespace = ?');
    this.listNs = this.db.prepare('SELECT doc FROM metadef_namespaces ORDER BY namespace');
    this.casNs = this.db.prepare('UPDATE metadef_namespaces SET namespace = ?, revision = ?, doc = ? WHERE id = ? AND revision = ?');
    this.deleteNs = this.db.prepare('DELETE FROM metadef_namespaces WHERE id = ?');
    this.listTypes = this.db.prepare('SELECT doc FROM metadef_resource_types ORDER BY name');
    this.insertType = this.db.prepare('INSERT OR IGNORE INTO metadef_resource_types (name, doc) VALUES (?, ?)');
    this.commits = new WalGroupCommit(this.db, opts.path);
  }

  async create(ns: MetadefNamespace): Promise<void> {
    if (ns.revision !== 1) throw new Error('create: a new namespace is at revision 1');
    try {
      this.insertNs.run(ns.id, ns.namespace, ns.revision, JSON.stringify(ns));
    } catch (err) {
      if (isNameTaken(err)) throw new MetadefNameTakenError(ns.namespace);
      throw err;
    }
    await this.commits.durable();
  }

  async get(namespace: string): Promise<MetadefNamespace | null> {
    const row = this.getNs.get(namespace);
    return row ? (JSON.parse(row.doc) as MetadefNamespace) : null;
  }

  async list(): Promise<MetadefNamespace[]> {
    return this.listNs.all().map((r) => JSON.parse(r.doc) as MetadefNamespace);
  }

  async replace(current: MetadefNamespace, next: MetadefNamespace): Promise<boolean> {
    // A next at the same revision would let every writer of that revision match in turn.
    if (next.id !== current.id || next.revision !== current.revision + 1) throw new Error('replace: next must be the same namespace at the next revision');
    let changed: boolean;
    try {
      changed = this.casNs.run(next.namespace, next.revision, JSON.stringify(next), current.id, current.revision).changes === 1;
    } catch (err) {
      if (isNameTaken(err)) throw new MetadefNameTakenError(next.namespace);
      throw err;
    }
    if (changed) await this.commits.durable();
    return changed;
  }

  async remove(ns: MetadefNamespace): Promise<boolean> {
    const removed = this.deleteNs.run(ns.id).changes === 1;
    if (removed) await this.commits.durable();
    return removed;
  }

  async resourceTypes(): Promise<ResourceType[]> {
    return this.listTypes.all().map((r) => JSON.parse(r.doc) as ResourceType);
  }

  async addResourceType(rt: ResourceType): Promise<void> {
    if (this.insertType.run(rt.name, JSON.stringify(rt)).changes === 1) await this.commits.durable();
  }

  async close(): Promise<void> {
    await this.commits.close();
    this.db.close();
  }
}
