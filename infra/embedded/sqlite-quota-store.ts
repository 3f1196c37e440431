/**
 * QuotaStore on SQLite: one row per holding; a hold is read-sum-check-write in one IMMEDIATE
 * transaction, so concurrent holds (even from another process sharing the file) are serialized
 * and the limit can never be overshot.
 */
import Database from 'better-sqlite3';
import { QUOTA_RESOURCES, checkHold, type Amounts, type Holding, type QuotaRefusal, type QuotaStore } from '../../core/quota.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS quota_holdings (
  project TEXT NOT NULL,
  key     TEXT NOT NULL,
  amounts TEXT NOT NULL,
  at      TEXT NOT NULL,
  PRIMARY KEY (project, key)
);
`;

interface Row { key: string; amounts: string; at: string }

export class SqliteQuotaStore implements QuotaStore {
  private readonly db: Database.Database;
  private readonly select: Database.Statement<[string], Row>;
  private readonly holdTx: (project: string, key: string, amounts: Amounts, limits: Amounts, at: string) => QuotaRefusal | null;
  private readonly releaseTx: (project: string, releases: { key: string; ifSetBefore?: string }[]) => void;

  constructor(opts: { path: string; busyTimeoutMs?: number }) {
    this.db = new Database(opts.path);
    this.db.pragma(`busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs ?? 5000))}`);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.exec(SCHEMA);
    this.select = this.db.prepare('SELECT key, amounts, at FROM quota_holdings WHERE project = ?');
    const upsert = this.db.prepare('INSERT INTO quota_holdings (project, key, amounts, at) VALUES (?, ?, ?, ?) ON CONFLICT (project, key) DO UPDATE SET amounts = excluded.amounts, at = excluded.at');
    const remove = this.db.prepare('DELETE FROM quota_holdings WHERE project = ? AND key = ?');
    const removeIfBefore = this.db.prepare('DELETE FROM quota_holdings WHERE project = ? AND key = ? AND at < ?');
    const hold = this.db.transaction((project: string, key: string, amounts: Amounts, limits: Amounts, at: string) => {
      const refusal = checkHold(this.rows(project), key, amounts, limits);
      if (!refusal) upsert.run(project, key, JSON.stringify(clean(amounts)), at);
      return refusal;
    });
    const release = this.db.transaction((project: string, releases: { key: string; ifSetBefore?: string }[]) => {
      for (const r of releases) {
        if (r.ifSetBefore === undefined) remove.run(project, r.key);
        else removeIfBefore.run(project, r.key, r.ifSetBefore);
      }
    });
    this.holdTx = (...args) => hold.immediate(...args);
    this.releaseTx = (...args) => release.immediate(...args);
  }

  async hold(project: string, key: string, amounts: Amounts, limits: Amounts, at: string): Promise<QuotaRefusal | null> {
    return this.holdTx(project, key, amounts, limits, at);
  }

  async release(project: string, releases: { key: string; ifSetBefore?: string }[]): Promise<void> {
    this.releaseTx(project, releases);
  }

  async holdings(project: string): Promise<Holding[]> {
    return this.rows(project);
  }

  async close(): Promise<void> {
    this.db.close();
  }

  private rows(project: string): Holding[] {
    return this.select.all(project).map((r) => ({ key: r.key, amounts: JSON.parse(r.amounts) as Amounts, at: r.at }));
  }
}

/** Only known resources, only non-zero amounts. */
export function clean(amounts: Amounts): Amounts {
  const out: Amounts = {};
  for (const resource of QUOTA_RESOURCES) if (amounts[resource]) out[resource] = amounts[resource];
  return out;
}
