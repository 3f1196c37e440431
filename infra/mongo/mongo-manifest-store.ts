/**
 * ManifestStore on MongoDB (official driver); also runs on FerretDB v1, whose subset it keeps to:
 * no transactions, no aggregation-pipeline updates, and no query conditions inside arrays
 * (FerretDB 1.24 ignores `$pull` with a condition and matches nothing with `$elemMatch`).
 *
 * Stored shape: the ImageDoc with `_id` = image id, plus two bookkeeping fields the port never
 * sees: `pir_pending` (true while the outbox holds events; what withPendingEvents queries) and
 * `pir_ack` (a counter bumped by each ackEvents, so acks that race each other or a replace()
 * retry instead of overwriting one another). Every write is a single-document write, which both
 * servers apply atomically.
 */
import { MongoClient, MongoServerError } from 'mongodb';
import type { Collection, Filter, Sort, WriteConcernSettings } from 'mongodb';
import type { ImageDoc, ImageStatus } from '../../schemas/image.js';
import { ManifestConflictError } from '../../core/ports.js';
import type { ListQuery, ManifestStore } from '../../core/ports.js';

export interface MongoManifestStoreOptions {
  /** mongodb:// URL (a database name in the path is ignored: dbName decides). */
  url: string;
  dbName: string;
  /** Collection name (default 'images'). */
  collection?: string;
  /** How long to wait for a reachable server before an operation fails (default 5000 ms). */
  serverSelectionTimeoutMs?: number;
  /** Default { w: 'majority', journal: true }: acknowledged writes survive a crash. */
  writeConcern?: WriteConcernSettings;
}

type Stored = Omit<ImageDoc, 'id'> & { _id: string; id: string; pir_pending: boolean; pir_ack: number };

/** How often ackEvents retries when another writer got in between (each retry re-reads). */
const ACK_RETRIES = 20;

function toStored(doc: ImageDoc): Stored {
  return { ...doc, _id: doc.id, pir_pending: doc.outbox.length > 0, pir_ack: 0 };
}

function fromStored(stored: Stored): ImageDoc {
  const { _id, pir_pending, pir_ack, ...doc } = stored;
  void _id; void pir_pending; void pir_ack;
  return doc as ImageDoc;
}

function field(key: string): string {
  return key === 'id' ? '_id' : key;
}

export class MongoManifestStore implements ManifestStore {
  private readonly client: MongoClient;
  private readonly col: Collection<Stored>;
  private ready: Promise<void> | null = null;
  private closed = false;

  constructor(private readonly opts: MongoManifestStoreOptions) {
    this.client = new MongoClient(opts.url, {
      serverSelectionTimeoutMS: opts.serverSelectionTimeoutMs ?? 5000,
      ignoreUndefined: true,
      writeConcern: opts.writeConcern ?? { w: 'majority', journal: true },
    });
    this.col = this.client.db(opts.dbName).collection<Stored>(opts.collection ?? 'images');
  }

  /** Connects and creates the indexes; every operation calls it, so calling it is optional. */
  async start(): Promise<void> {
    if (this.closed) throw new Error('manifest store is closed');
    if (!this.ready) {
      this.ready = (async () => {
        await this.client.connect();
        await this.col.createIndexes([
          { key: { pir_pending: 1, updated_at: 1 }, name: 'pending_updated' },
          { key: { status: 1, updated_at: 1 }, name: 'status_updated' },
          { key: { created_at: 1, _id: 1 }, name: 'created' },
          { key: { updated_at: 1, _id: 1 }, name: 'updated' },
          { key: { owner: 1 }, name: 'owner' },
          { key: { name: 1 }, name: 'name' },
          { key: { visibility: 1 }, name: 'visibility' },
        ]);
      })();
      this.ready.catch(() => { this.ready = null; }); // let the next call try again
    }
    return this.ready;
  }

  async create(doc: ImageDoc): Promise<void> {
    await this.start();
    try {
      await this.col.insertOne(toStored(doc));
    } catch (err) {
      if (err instanceof MongoServerError && err.code === 11000) throw new ManifestConflictError(doc.id);
      throw err;
    }
  }

  async get(id: string): Promise<ImageDoc | null> {
    await this.start();
    const stored = await this.col.findOne({ _id: id });
    return stored ? fromStored(stored) : null;
  }

  async list(query: ListQuery): Promise<ImageDoc[]> {
    await this.start();
    const and: Filter<Stored>[] = [];
    for (const [key, value] of Object.entries(query.where)) {
      if (value === undefined) continue;
      and.push({ [field(key)]: Array.isArray(value) ? { $in: value } : value } as Filter<Stored>);
    }
    const k = field(query.sortKey);
    const desc = query.sortDir === 'desc';
    if (query.after) {
      // Order: nulls first ascending, last descending (MongoDB's and SQLite's default), ties by _id.
      const { value, id } = query.after;
      const idAfter = { _id: desc ? { $lt: id } : { $gt: id } };
      let keyset: Filter<Stored>;
      if (k === '_id') keyset = idAfter as Filter<Stored>;
      else if (value === null) {
        keyset = (desc
          ? { [k]: null, ...idAfter }
          : { $or: [{ [k]: null, ...idAfter }, { [k]: { $ne: null } }] }) as Filter<Stored>;
      } else {
        const ors: object[] = [{ [k]: desc ? { $lt: value } : { $gt: value } }, { [k]: value, ...idAfter }];
        if (desc) ors.push({ [k]: null });
        keyset = { $or: ors } as Filter<Stored>;
      }
      and.push(keyset);
    }
    const filter: Filter<Stored> = and.length === 0 ? {} : and.length === 1 ? and[0]! : { $and: and };
    const dir = desc ? -1 : 1;
    const sort: Sort = k === '_id' ? { _id: dir } : { [k]: dir, _id: dir };
    const limit = Math.max(0, Math.floor(query.limit));
    if (limit === 0) return [];
    const docs = await this.col.find(filter).sort(sort).limit(limit).toArray();
    return docs.map(fromStored);
  }

  async replace(doc: ImageDoc, expectedRevision: number): Promise<boolean> {
    await this.start();
    const res = await this.col.replaceOne({ _id: doc.id, revision: expectedRevision }, toStored(doc));
    return res.matchedCount === 1;
  }

  async ackEvents(id: string, eventIds: string[]): Promise<void> {
    if (eventIds.length === 0) return;
    await this.start();
    const drop = new Set(eventIds);
    for (let i = 0; i < ACK_RETRIES; i++) {
      const cur = await this.col.findOne({ _id: id }, { projection: { outbox: 1, revision: 1, pir_ack: 1 } });
      if (!cur) return;
      const outbox = (cur.outbox ?? []).filter((e) => !drop.has(e.id));
      if (outbox.length === (cur.outbox ?? []).length) return;
      const res = await this.col.updateOne(
        { _id: id, revision: cur.revision, pir_ack: cur.pir_ack ?? 0 },
        { $set: { outbox, pir_pending: outbox.length > 0 }, $inc: { pir_ack: 1 } },
      );
      if (res.matchedCount === 1) return;
    }
    throw new Error(`ackEvents(${id}): the document kept changing; giving up after ${ACK_RETRIES} tries (the events stay pending and will be relayed again)`);
  }

  async withPendingEvents(updatedBefore: string, limit: number): Promise<ImageDoc[]> {
    await this.start();
    const n = Math.max(0, Math.floor(limit));
    if (n === 0) return [];
    const docs = await this.col.find({ pir_pending: true, updated_at: { $lt: updatedBefore } }).sort({ updated_at: 1, _id: 1 }).limit(n).toArray();
    return docs.map(fromStored);
  }

  async findStale(statuses: ImageStatus[], updatedBefore: string, limit: number): Promise<ImageDoc[]> {
    await this.start();
    const n = Math.max(0, Math.floor(limit));
    if (n === 0 || statuses.length === 0) return [];
    const docs = await this.col.find({ status: { $in: statuses }, updated_at: { $lt: updatedBefore } }).sort({ updated_at: 1, _id: 1 }).limit(n).toArray();
    return docs.map(fromStored);
  }

  async purge(id: string): Promise<void> {
    await this.start();
    await this.col.deleteOne({ _id: id });
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.client.close();
  }
}
