/**
 * QuotaStore on MongoDB that is also correct on FerretDB v1, whose conditional writes are not
 * atomic (see mongo-manifest-store.ts). Each project's ledger is a chain of states in the
 * collection `quota_ledger`: entry `<project>:<seq>` holds every holding of the project after
 * its seq-th change. A change reads the newest entry (seq s), computes the next state, and
 * inserts entry s+1: the unique _id makes exactly one writer of state s win; the others read
 * again and retry. So every change is applied to the exact state before it, and a hold that
 * would pass a limit is refused against the true totals: no overshoot, however many race.
 *
 * Old entries are deleted once KEEP newer ones exist and they are older than KEEP_MS (a writer
 * that held a state that old would otherwise re-use a free slot; none waits that long between
 * its read and its insert). A state holds one small record per image of the project with
 * something held (~100 bytes each), so a write costs in proportion to the project's images.
 */
import { MongoClient, MongoServerError, type Collection } from 'mongodb';
import { checkHold, type Amounts, type Holding, type QuotaRefusal, type QuotaStore } from '../../core/quota.js';
import { clean } from '../embedded/sqlite-quota-store.js';
import { monitoredClient } from './command-metrics.js';

interface LedgerEntry {
  _id: string;
  project: string;
  seq: number;
  at: string;
  holdings: Record<string, { amounts: Amounts; at: string }>;
}

const KEEP = 16;
const KEEP_MS = 120_000;
const RETRIES = 200;

const entryId = (project: string, seq: number) => `${project}:${seq}`;

export class MongoQuotaStore implements QuotaStore {
  private readonly client: MongoClient;
  private readonly ledger: Collection<LedgerEntry>;
  private ready: Promise<void> | null = null;
  /** The newest seq this process wrote or read per project: where head() starts looking. */
  private readonly lastSeq = new Map<string, number>();

  constructor(opts: { url: string; dbName?: string; collection?: string }) {
    this.client = monitoredClient(opts.url, 'quotas');
    const m = /^mongodb(?:\+srv)?:\/\/[^/]*\/([^?]+)/.exec(opts.url);
    this.ledger = this.client.db(opts.dbName ?? (m?.[1] ? decodeURIComponent(m[1]) : 'pir')).collection<LedgerEntry>(opts.collection ?? 'quota_ledger');
  }

  async start(): Promise<void> {
    this.ready ??= this.client.connect().then(() => undefined);
    this.ready.catch(() => { this.ready = null; });
    return this.ready;
  }

  async hold(project: string, key: string, amounts: Amounts, limits: Amounts, at: string): Promise<QuotaRefusal | null> {
    let refusal: QuotaRefusal | null = null;
    await this.change(project, (holdings) => {
      refusal = checkHold(toList(holdings), key, amounts, limits);
      if (refusal) return null;
      return { ...holdings, [key]: { amounts: clean(amounts), at } };
    });
    return refusal;
  }

  async release(project: string, releases: { key: string; ifSetBefore?: string }[]): Promise<void> {
    await this.change(project, (holdings) => {
      const next = { ...holdings };
      let changed = false;
      for (const r of releases) {
        const h = next[r.key];
        if (!h || (r.ifSetBefore !== undefined && !(h.at < r.ifSetBefore))) continue;
        delete next[r.key];
        changed = true;
      }
      return changed ? next : null;
    });
  }

  async holdings(project: string): Promise<Holding[]> {
    await this.start();
    return toList((await this.head(project))?.holdings ?? {});
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  /**
   * The project's newest entry, by `_id` from the seq this process last saw, stepping forward
   * while the next exists (seqs have no gaps: each is the insert after the one before). Only
   * without a hint, or when pruning passed it, the query by project, which scans the ledger of
   * every project on FerretDB's SQLite backend (it indexes only `_id`).
   */
  private async head(project: string): Promise<LedgerEntry | null> {
    const hint = this.lastSeq.get(project);
    let entry = hint === undefined ? null : await this.ledger.findOne({ _id: entryId(project, hint) });
    entry ??= await this.ledger.find({ project }).sort({ seq: -1 }).limit(1).next();
    if (!entry) return null;
    let newest: LedgerEntry = entry;
    for (;;) {
      const next: LedgerEntry | null = await this.ledger.findOne({ _id: entryId(project, newest.seq + 1) });
      if (!next) break;
      newest = next;
    }
    this.lastSeq.set(project, newest.seq);
    return newest;
  }

  /** The compare-and-set loop: `next` returns the new holdings, or null to write nothing. */
  private async change(project: string, next: (holdings: LedgerEntry['holdings']) => LedgerEntry['holdings'] | null): Promise<void> {
    await this.start();
    for (let attempt = 0; attempt < RETRIES; attempt++) {
      const head = await this.head(project);
      const seq = head ? head.seq + 1 : 0;
      const holdings = next(head?.holdings ?? {});
      if (!holdings) return;
      try {
        await this.ledger.insertOne({ _id: entryId(project, seq), project, seq, at: new Date().toISOString(), holdings });
      } catch (error) {
        if (error instanceof MongoServerError && (error.code === 11000 || error.message.includes('SQLITE_BUSY'))) {
          // Someone else wrote state `seq` first (or the server was busy and wrote nothing): look again.
          await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(50, 2 * (attempt + 1))));
          continue;
        }
        throw error;
      }
      this.lastSeq.set(project, seq);
      if (seq % KEEP === 0 && seq >= 2 * KEEP) {
        const before = new Date(Date.now() - KEEP_MS).toISOString();
        void this.ledger.deleteMany({ project, seq: { $lt: seq - KEEP }, at: { $lt: before } }).catch(() => {});
      }
      return;
    }
    throw new Error(`quota ledger of ${project}: gave up after ${RETRIES} contended writes`);
  }
}

function toList(holdings: LedgerEntry['holdings']): Holding[] {
  return Object.entries(holdings).map(([key, h]) => ({ key, amounts: h.amounts, at: h.at }));
}
