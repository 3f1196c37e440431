/**
 * WebhookStore on MongoDB, within FerretDB v1's limits (README, MongoDB section): inserts with a
 * unique _id, finds, replaceOne by _id, deleteMany, $set/$inc/$push. Owners' changes of a
 * webhook run under a lease (mongo-lease.ts); deliverers set their own fields only. FerretDB
 * applies $inc by reading and writing back the document, so two workers failing deliveries to one
 * endpoint at the same instant may count one failure once instead of twice (disabling one
 * failure later), never disable an endpoint that succeeded.
 */
import { MongoBulkWriteError, MongoClient, type Collection } from 'mongodb';
import { deleteByIds, GroupWriter, writeFailure } from './group-writer.js';
import type { Attempt, Delivery, DeliveryStatus, Subscription, WebhookStore } from '../../core/webhooks/model.js';
import { monitoredClient } from './command-metrics.js';
import { MongoLeases } from './mongo-lease.js';

/** Deliveries per insert command: one event's fan-out to 100 subscribers is one command. */
const INSERT_BATCH = 200;

type SubDoc = Omit<Subscription, 'id'> & { _id: string };
type DeliveryDoc = Omit<Delivery, 'id'> & { _id: string };

const toSub = ({ _id, ...rest }: SubDoc): Subscription => ({ id: _id, ...rest });
const toDelivery = ({ _id, ...rest }: DeliveryDoc): Delivery => ({ id: _id, ...rest });

const KEY_FINGERPRINT = 'secret-key-fingerprint';

export class MongoWebhookStore implements WebhookStore {
  private readonly client: MongoClient;
  private readonly subs: Collection<SubDoc>;
  private readonly deliveries: Collection<DeliveryDoc>;
  private readonly settings: Collection<{ _id: string; fingerprint: string; at: string }>;
  /** An owner's changes of one webhook, and a project's creates (its cap), one at a time (mongo-lease.ts). */
  private readonly leases: MongoLeases;
  private readonly attempts: GroupWriter<DeliveryDoc>;
  /** Inserts of attempted deliveries: one insert command for those that end together. */
  private readonly inserts: GroupWriter<DeliveryDoc>;

  constructor(opts: { url: string; dbName?: string }) {
    this.client = monitoredClient(opts.url, 'webhooks');
    const m = /^mongodb(?:\+srv)?:\/\/[^/]*\/([^?]+)/.exec(opts.url);
    const db = this.client.db(opts.dbName ?? (m?.[1] ? decodeURIComponent(m[1]) : 'pir'));
    this.subs = db.collection<SubDoc>('webhook_subscriptions');
    this.deliveries = db.collection<DeliveryDoc>('webhook_deliveries');
    this.settings = db.collection('webhook_settings');
    this.leases = new MongoLeases(db.collection('webhook_leases'), db.collection('webhook_lease_heads'));
    this.attempts = new GroupWriter(this.deliveries, this.client);
    this.inserts = new GroupWriter(this.deliveries, this.client, 100); // inserts of 100 documents are measured safe (the wedge is on update)
  }

  async start(): Promise<void> {
    await this.client.connect();
    await this.deliveries.createIndex({ subscription_id: 1, created_at: -1 }).catch(() => undefined);
    await this.deliveries.createIndex({ created_at: 1 }).catch(() => undefined);
  }

  /**
   * The fingerprint of the secret key the processes sharing this database seal with: the first
   * process to ask records its own; later ones get that one back to compare.
   */
  async sharedKeyFingerprint(mine: string): Promise<string> {
    try {
      await this.settings.insertOne({ _id: KEY_FINGERPRINT, fingerprint: mine, at: new Date().toISOString() });
      return mine;
    } catch (error) {
      if ((error as { code?: number }).code !== 11000) throw error;
    }
    return (await this.settings.findOne({ _id: KEY_FINGERPRINT }))?.fingerprint ?? mine;
  }

  /** The recorded fingerprint, if any process recorded one (read only: for `pir doctor`). */
  async recordedKeyFingerprint(): Promise<string | null> {
    return (await this.settings.findOne({ _id: KEY_FINGERPRINT }))?.fingerprint ?? null;
  }

  /** Records `mine` as the key in use (it opens the stored secrets: the record was stale). */
  async replaceKeyFingerprint(mine: string): Promise<void> {
    await this.settings.updateOne({ _id: KEY_FINGERPRINT }, { $set: { fingerprint: mine, at: new Date().toISOString() } }, { upsert: true });
  }

  exclusive<T>(key: string, what: string, fn: () => Promise<T>): Promise<T> {
    return this.leases.run(key, what, fn);
  }

  async createSubscription(sub: Subscription): Promise<void> {
    const { id, ...rest } = sub;
    await this.subs.insertOne({ _id: id, ...rest });
  }

  async getSubscription(id: string): Promise<Subscription | null> {
    const doc = await this.subs.findOne({ _id: id });
    return doc ? toSub(doc) : null;
  }

  async listSubscriptions(projectId: string | null, limit: number, after?: string): Promise<Subscription[]> {
    const filter: Record<string, unknown> = {};
    if (projectId !== null) filter.project_id = projectId;
    if (after) filter._id = { $gt: after };
    return (await this.subs.find(filter).sort({ _id: 1 }).limit(limit).toArray()).map(toSub);
  }

  async enabledSubscriptions(): Promise<Subscription[]> {
    return (await this.subs.find({ enabled: true }).toArray()).map(toSub);
  }

  async replaceSubscription(sub: Subscription): Promise<void> {
    const { id, ...rest } = sub;
    await this.subs.replaceOne({ _id: id }, rest);
  }

  async deleteSubscription(id: string): Promise<boolean> {
    await this.deliveries.deleteMany({ subscription_id: id });
    return (await this.subs.deleteMany({ _id: id })).deletedCount === 1;
  }

  // The deliverers' writes set their own fields only: a whole stale document written back undid
  // an owner's change made meanwhile (a webhook disabled by its owner came back enabled).
  async recordSuccess(id: string): Promise<void> {
    // Read by _id first (any other filter is a scan on FerretDB's SQLite backend), written only after failures.
    const sub = await this.getSubscription(id);
    if (sub && sub.consecutive_failures !== 0) await this.subs.updateOne({ _id: id }, { $set: { consecutive_failures: 0 } });
  }

  async recordFailure(id: string, disableAfter: number, reason: string, at: string): Promise<boolean> {
    await this.subs.updateOne({ _id: id }, { $inc: { consecutive_failures: 1 } });
    const sub = await this.getSubscription(id);
    if (!sub || !sub.enabled || sub.consecutive_failures < disableAfter) return false;
    await this.disable(id, reason, at);
    return true;
  }

  async disable(id: string, reason: string, at: string): Promise<void> {
    await this.subs.updateOne({ _id: id }, { $set: { enabled: false, disabled_reason: reason, disabled_at: at } });
  }

  async addDelivery(d: Delivery): Promise<boolean> {
    const { id, ...rest } = d;
    try {
      await this.deliveries.insertOne({ _id: id, ...rest });
      return true;
    } catch (error) {
      if (writeFailure(error).code === 11000) return false;
      throw error;
    }
  }

  async addDeliveries(deliveries: Delivery[]): Promise<Set<string>> {
    const existing = new Set<string>();
    for (let i = 0; i < deliveries.length; i += INSERT_BATCH) {
      const batch = deliveries.slice(i, i + INSERT_BATCH);
      try {
        await this.deliveries.insertMany(batch.map(({ id, ...rest }) => ({ _id: id, ...rest })), { ordered: false });
      } catch (error) {
        // Unordered: every document was tried; the duplicates (a repeated event) are reported one by one.
        if (!(error instanceof MongoBulkWriteError)) throw error;
        const errors = Array.isArray(error.writeErrors) ? error.writeErrors : [error.writeErrors];
        for (const e of errors) {
          if (e.code !== 11000) throw error;
          existing.add(batch[e.index]!.id);
        }
      }
    }
    return existing;
  }

  async addAttempted(d: Delivery): Promise<boolean> {
    const { id, ...rest } = d;
    try {
      // An insert rather than insert-then-update: on FerretDB an update costs several inserts.
      await this.inserts.write({ insertOne: { document: { _id: id, ...rest } } });
      return true;
    } catch (error) {
      if (writeFailure(error).code !== 11000) throw error;
      for (const attempt of d.attempts) await this.recordAttempt(id, attempt, d.status);
      return false;
    }
  }

  async getDelivery(id: string): Promise<Delivery | null> {
    const doc = await this.deliveries.findOne({ _id: id });
    return doc ? toDelivery(doc) : null;
  }

  async recordAttempt(id: string, attempt: Attempt, status: DeliveryStatus): Promise<void> {
    // One statement ($push and $set on one document: FerretDB v1 has both), sent with the
    // other deliveries' attempts that finish meanwhile (one command for many).
    // A retry's 'pending' leaves the status as it is (WebhookStore.recordAttempt).
    const update = status === 'pending' ? { $push: { attempts: attempt } } : { $push: { attempts: attempt }, $set: { status } };
    await this.attempts.write({ updateOne: { filter: { _id: id }, update } });
  }

  async restartDelivery(id: string): Promise<number> {
    const d = await this.deliveries.findOne({ _id: id });
    if (!d) return 0;
    const redeliveries = d.redeliveries + 1;
    await this.deliveries.replaceOne({ _id: id }, { ...d, redeliveries, status: 'pending' });
    return redeliveries;
  }

  async listDeliveries(subscriptionId: string, limit: number, after?: string): Promise<Delivery[]> {
    const filter: Record<string, unknown> = { subscription_id: subscriptionId };
    if (after) {
      const marker = await this.deliveries.findOne({ _id: after, subscription_id: subscriptionId });
      if (marker) filter.$or = [{ created_at: { $lt: marker.created_at } }, { created_at: marker.created_at, _id: { $lt: after } }];
    }
    return (await this.deliveries.find(filter).sort({ created_at: -1, _id: -1 }).limit(limit).toArray()).map(toDelivery);
  }

  /** Found by one query (a scan on FerretDB: the caller paces it), deleted by _id in small batches. */
  async deleteEndedDeliveries(createdBefore: string, limit: number): Promise<number> {
    const n = Math.max(0, Math.floor(limit));
    if (n === 0) return 0;
    const old = await this.deliveries.find({ created_at: { $lt: createdBefore }, status: { $ne: 'pending' } }, { projection: { _id: 1 } }).limit(n).toArray();
    return deleteByIds(this.deliveries, old.map(({ _id }) => _id));
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}
