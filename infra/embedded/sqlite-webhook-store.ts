/** WebhookStore on SQLite (embedded mode): one JSON document per row, plus the columns queries need. */
import Database from 'better-sqlite3';
import { WalGroupCommit } from './wal-group-commit.js';
import { KeyedMutex } from '../../core/keyed-mutex.js';
import type { Attempt, Delivery, DeliveryStatus, Subscription, WebhookStore } from '../../core/webhooks/model.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS webhook_subscriptions (
  id TEXT PRIMARY KEY, project_id TEXT NOT NULL, enabled INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
  id TEXT PRIMARY KEY, subscription_id TEXT NOT NULL, created_at TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_sub ON webhook_deliveries (subscription_id, created_at, id);
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_time ON webhook_deliveries (created_at);
`;

export class SqliteWebhookStore implements WebhookStore {
  private readonly db: Database.Database;
  /** Writes resolve once on disk, one fdatasync for all those made meanwhile (a fan-out's 100 attempts). */
  private readonly commits: WalGroupCommit;
  private readonly changes = new KeyedMutex();
  /** Read for every event the fan-out sees (core/webhooks/fanout.ts): prepared once. */
  private readonly enabled: Database.Statement<[], { doc: string }>;

  constructor(opts: { path: string }) {
    this.db = new Database(opts.path);
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('journal_mode = WAL');
    this.db.exec(SCHEMA);
    this.enabled = this.db.prepare('SELECT doc FROM webhook_subscriptions WHERE enabled = 1');
    this.commits = new WalGroupCommit(this.db, opts.path);
  }

  async createSubscription(sub: Subscription): Promise<void> {
    this.db.prepare('INSERT INTO webhook_subscriptions (id, project_id, enabled, doc) VALUES (?, ?, ?, ?)').run(sub.id, sub.project_id, sub.enabled ? 1 : 0, JSON.stringify(sub));
    await this.commits.durable();
  }

  async getSubscription(id: string): Promise<Subscription | null> {
    const row = this.db.prepare<[string], { doc: string }>('SELECT doc FROM webhook_subscriptions WHERE id = ?').get(id);
    return row ? (JSON.parse(row.doc) as Subscription) : null;
  }

  async listSubscriptions(projectId: string | null, limit: number, after = ''): Promise<Subscription[]> {
    const rows = projectId === null
      ? this.db.prepare<[string, number], { doc: string }>('SELECT doc FROM webhook_subscriptions WHERE id > ? ORDER BY id LIMIT ?').all(after, limit)
      : this.db.prepare<[string, string, number], { doc: string }>('SELECT doc FROM webhook_subscriptions WHERE project_id = ? AND id > ? ORDER BY id LIMIT ?').all(projectId, after, limit);
    return rows.map((r) => JSON.parse(r.doc) as Subscription);
  }

  async enabledSubscriptions(): Promise<Subscription[]> {
    return this.enabled.all().map((r) => JSON.parse(r.doc) as Subscription);
  }

  async replaceSubscription(sub: Subscription): Promise<void> {
    this.db.prepare('UPDATE webhook_subscriptions SET enabled = ?, doc = ? WHERE id = ?').run(sub.enabled ? 1 : 0, JSON.stringify(sub), sub.id);
    await this.commits.durable();
  }

  async deleteSubscription(id: string): Promise<boolean> {
    const deleted = this.db.transaction(() => {
      this.db.prepare('DELETE FROM webhook_deliveries WHERE subscription_id = ?').run(id);
      return this.db.prepare('DELETE FROM webhook_subscriptions WHERE id = ?').run(id).changes === 1;
    })();
    await this.commits.durable();
    return deleted;
  }

  /** One process owns the embedded data directory (its lock): exclusion within it is enough. */
  exclusive<T>(key: string, _what: string, fn: () => Promise<T>): Promise<T> {
    return this.changes.run(key, fn);
  }

  async recordSuccess(id: string): Promise<void> {
    this.update(id, (s) => { s.consecutive_failures = 0; });
    await this.commits.durable();
  }

  async recordFailure(id: string, disableAfter: number, reason: string, at: string): Promise<boolean> {
    let disabled = false;
    this.update(id, (s) => {
      s.consecutive_failures++;
      if (s.enabled && s.consecutive_failures >= disableAfter) {
        Object.assign(s, { enabled: false, disabled_reason: reason, disabled_at: at });
        disabled = true;
      }
    });
    await this.commits.durable();
    return disabled;
  }

  async disable(id: string, reason: string, at: string): Promise<void> {
    this.update(id, (s) => { Object.assign(s, { enabled: false, disabled_reason: reason, disabled_at: at }); });
    await this.commits.durable();
  }

  async addDelivery(d: Delivery): Promise<boolean> {
    const added = this.db.prepare('INSERT OR IGNORE INTO webhook_deliveries (id, subscription_id, created_at, doc) VALUES (?, ?, ?, ?)').run(d.id, d.subscription_id, d.created_at, JSON.stringify(d)).changes === 1;
    await this.commits.durable();
    return added;
  }

  async addDeliveries(deliveries: Delivery[]): Promise<Set<string>> {
    const insert = this.db.prepare('INSERT OR IGNORE INTO webhook_deliveries (id, subscription_id, created_at, doc) VALUES (?, ?, ?, ?)');
    const existing = new Set<string>();
    this.db.transaction(() => {
      for (const d of deliveries) if (insert.run(d.id, d.subscription_id, d.created_at, JSON.stringify(d)).changes !== 1) existing.add(d.id);
    })();
    await this.commits.durable();
    return existing;
  }

  async addAttempted(d: Delivery): Promise<boolean> {
    const added = this.db.prepare('INSERT OR IGNORE INTO webhook_deliveries (id, subscription_id, created_at, doc) VALUES (?, ?, ?, ?)').run(d.id, d.subscription_id, d.created_at, JSON.stringify(d)).changes === 1;
    if (!added) this.updateDelivery(d.id, (e) => { e.attempts.push(...d.attempts); e.status = d.status; });
    await this.commits.durable();
    return added;
  }

  async getDelivery(id: string): Promise<Delivery | null> {
    const row = this.db.prepare<[string], { doc: string }>('SELECT doc FROM webhook_deliveries WHERE id = ?').get(id);
    return row ? (JSON.parse(row.doc) as Delivery) : null;
  }

  async recordAttempt(id: string, attempt: Attempt, status: DeliveryStatus): Promise<void> {
    this.updateDelivery(id, (d) => {
      d.attempts.push(attempt);
      if (status !== 'pending') d.status = status; // WebhookStore.recordAttempt: a retry never reopens a settled delivery
    });
    await this.commits.durable();
  }

  async restartDelivery(id: string): Promise<number> {
    let n = 0;
    this.updateDelivery(id, (d) => { d.redeliveries++; d.status = 'pending'; n = d.redeliveries; });
    await this.commits.durable();
    return n;
  }

  async listDeliveries(subscriptionId: string, limit: number, after?: string): Promise<Delivery[]> {
    let rows: { doc: string }[];
    const marker = after ? this.db.prepare<[string, string], { created_at: string }>('SELECT created_at FROM webhook_deliveries WHERE id = ? AND subscription_id = ?').get(after, subscriptionId) : undefined;
    if (marker && after) {
      rows = this.db.prepare<[string, string, string, string, number], { doc: string }>(
        'SELECT doc FROM webhook_deliveries WHERE subscription_id = ? AND (created_at < ? OR (created_at = ? AND id < ?)) ORDER BY created_at DESC, id DESC LIMIT ?',
      ).all(subscriptionId, marker.created_at, marker.created_at, after, limit);
    } else {
      rows = this.db.prepare<[string, number], { doc: string }>('SELECT doc FROM webhook_deliveries WHERE subscription_id = ? ORDER BY created_at DESC, id DESC LIMIT ?').all(subscriptionId, limit);
    }
    return rows.map((r) => JSON.parse(r.doc) as Delivery);
  }

  async deleteEndedDeliveries(createdBefore: string, limit: number): Promise<number> {
    const { changes } = this.db.prepare<[string, number]>(
      "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries WHERE created_at < ? AND json_extract(doc, '$.status') <> 'pending' LIMIT ?)",
    ).run(createdBefore, Math.max(0, Math.floor(limit)));
    if (changes > 0) await this.commits.durable();
    return changes;
  }

  async close(): Promise<void> {
    await this.commits.close();
    this.db.close();
  }

  private update(id: string, change: (s: Subscription) => void): void {
    this.db.transaction(() => {
      const row = this.db.prepare<[string], { doc: string }>('SELECT doc FROM webhook_subscriptions WHERE id = ?').get(id);
      if (!row) return;
      const sub = JSON.parse(row.doc) as Subscription;
      change(sub);
      this.db.prepare('UPDATE webhook_subscriptions SET enabled = ?, doc = ? WHERE id = ?').run(sub.enabled ? 1 : 0, JSON.stringify(sub), id);
    }).immediate();
  }

  private updateDelivery(id: string, change: (d: Delivery) => void): void {
    this.db.transaction(() => {
      const row = this.db.prepare<[string], { doc: string }>('SELECT doc FROM webhook_deliveries WHERE id = ?').get(id);
      if (!row) return;
      const d = JSON.parse(row.doc) as Delivery;
      change(d);
      this.db.prepare('UPDATE webhook_deliveries SET doc = ? WHERE id = ?').run(JSON.stringify(d), id);
    }).immediate();
  }
}
