/**
 * MetadefStore on MongoDB, within FerretDB v1's limits: the one atomic check FerretDB 1.x makes
 * is an insert's unique _id (see mongo-manifest-store.ts), so every compare-and-set is an insert
 * and nothing is ever decided by an update's or a delete's filter:
 * - revision n of namespace `id` is the insert of `metadef_revisions` {_id: "<id>:<n>"} holding
 *   the whole namespace (null once removed, which is final): one writer of n wins. The winner
 *   then copies it to `metadef_heads` (by _id), a hint that may trail (a crash, a slow writer):
 *   every read steps forward from it while revision n + 1 exists, so nothing wedges.
 * - a name is held by the newest of its claims (`metadef_names` {name, g}, the insert of g + 1
 *   being the CAS), taken before the revision `rev` that gives the namespace that name. A claim
 *   holds only while its namespace carries the name, so renames and removals free names by
 *   their revision alone, with no delete to race. A claim whose revision never lands (its
 *   writer died) is voided after IN_FLIGHT_MS by writing that revision unchanged.
 *
 * A namespace is stored as JSON text: nothing queries inside it, and property names are the
 * users' (MongoDB and FerretDB differ on '.' and '$' in keys). Revisions are kept (a namespace is
 * small and changes rarely); deleting them would let a stale writer win a freed number. Filters
 * other than _id (a name's claims) scan on FerretDB, but only the small names collection.
 */
import type { Collection, MongoClient } from 'mongodb';
import { MetadefNameTakenError, type MetadefNamespace, type MetadefStore, type ResourceType } from '../../core/metadef-ports.js';
import { monitoredClient } from './command-metrics.js';
import { writeFailure } from './group-writer.js';

/** A namespace's revision n: its content, or null when removed (n > 0) or not yet created (n = 0). */
type State = { n: number; ns: MetadefNamespace | null };
type HeadDoc = { _id: string; n: number; doc: string | null };
type RevisionDoc = { _id: string; doc: string | null };
/** The g-th claim of a name, by namespace `ns_id` for its revision `rev`, at `at` (ms since epoch). */
type NameDoc = { _id: string; name: string; g: number; ns_id: string; rev: number; at: number };
type ResourceTypeDoc = Omit<ResourceType, 'name'> & { _id: string };

/** How long a claim whose revision has not landed counts as a write under way (then its writer is presumed dead). */
const IN_FLIGHT_MS = 30_000;

const revisionId = (id: string, n: number) => `${id}:${String(n).padStart(10, '0')}`;
const isDuplicate = (err: unknown) => writeFailure(err).code === 11000;
const parse = (doc: string | null): MetadefNamespace | null => (doc === null ? null : (JSON.parse(doc) as MetadefNamespace));
const removed = (s: State) => s.n > 0 && s.ns === null;

export class MongoMetadefStore implements MetadefStore {
  private readonly client: MongoClient;
  private readonly heads: Collection<HeadDoc>;
  private readonly revs: Collection<RevisionDoc>;
  private readonly names: Collection<NameDoc>;
  private readonly types: Collection<ResourceTypeDoc>;

  constructor(opts: { url: string; dbName?: string; prefix?: string }) {
    this.client = monitoredClient(opts.url, 'metadefs');
    const m = /^mongodb(?:\+srv)?:\/\/[^/]*\/([^?]+)/.exec(opts.url);
    const db = this.client.db(opts.dbName ?? (m?.[1] ? decodeURIComponent(m[1]) : 'pir'));
    const prefix = opts.prefix ?? '';
    this.heads = db.collection<HeadDoc>(`${prefix}metadef_heads`);
    this.revs = db.collection<RevisionDoc>(`${prefix}metadef_revisions`);
    this.names = db.collection<NameDoc>(`${prefix}metadef_names`);
    this.types = db.collection<ResourceTypeDoc>(`${prefix}metadef_resource_types`);
  }

  async start(): Promise<void> {
    await this.client.connect();
    await this.names.createIndex({ name: 1, g: -1 }).catch(() => undefined);
  }

  async create(ns: MetadefNamespace): Promise<void> {
    if (ns.revision !== 1) throw new Error('create: a new namespace is at revision 1'); // its slot is revision 1's
    // The head first (at 0, empty): list() reads the heads, so it sees the namespace once revision 1 lands.
    await this.heads.insertOne({ _id: ns.id, n: 0, doc: null });
    try {
      await this.claimName(ns.namespace, ns.id, 1);
    } catch (err) {
      await this.heads.deleteOne({ _id: ns.id }).catch(() => undefined);
      throw err;
    }
    // Lost only when the claim sat past IN_FLIGHT_MS and a rival voided it: the name is the rival's.
    if (!(await this.insertRevision(ns.id, 1, ns))) throw new MetadefNameTakenError(ns.namespace);
    await this.writeHead(ns.id, 1, ns);
  }

  async get(namespace: string): Promise<MetadefNamespace | null> {
    const claim = await this.newestClaim(namespace);
    if (!claim) return null;
    const { ns } = await this.resolve(claim.ns_id);
    return ns?.namespace === namespace ? ns : null;
  }

  async list(): Promise<MetadefNamespace[]> {
    const heads = await this.heads.find().toArray();
    const states = await Promise.all(heads.map((h) => this.forward(h._id, { n: h.n, ns: parse(h.doc) })));
    return states.flatMap((s) => (s.ns ? [s.ns] : [])).sort((a, b) => (a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : 0));
  }

  async replace(current: MetadefNamespace, next: MetadefNamespace): Promise<boolean> {
    const n = current.revision + 1;
    // Revision numbers are the CAS slots: a next at another number would leave a gap or a second winner.
    if (next.id !== current.id || next.revision !== n) throw new Error('replace: next must be the same namespace at the next revision');
    if (next.namespace !== current.namespace) await this.claimName(next.namespace, next.id, n);
    if (!(await this.insertRevision(next.id, n, next))) return false;
    await this.writeHead(next.id, n, next);
    return true;
  }

  async remove(ns: MetadefNamespace): Promise<boolean> {
    for (;;) {
      const state = await this.resolve(ns.id);
      if (!state.ns) return false;
      if (await this.insertRevision(ns.id, state.n + 1, null)) {
        await this.writeHead(ns.id, state.n + 1, null);
        return true;
      }
    }
  }

  async resourceTypes(): Promise<ResourceType[]> {
    return (await this.types.find().sort({ _id: 1 }).toArray()).map(({ _id, ...rest }) => ({ name: _id, ...rest }));
  }

  async addResourceType(rt: ResourceType): Promise<void> {
    const { name, ...rest } = rt;
    try {
      await this.types.insertOne({ _id: name, ...rest });
    } catch (err) {
      if (!isDuplicate(err)) throw err; // known already: the first record stays
    }
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  /** The namespace's newest revision, from its head. */
  private async resolve(id: string): Promise<State> {
    const head = await this.heads.findOne({ _id: id });
    return this.forward(id, head ? { n: head.n, ns: parse(head.doc) } : { n: 0, ns: null });
  }

  /** Steps from a known revision to the newest: revisions are numbered without gaps, and none follows a removal. */
  private async forward(id: string, from: State): Promise<State> {
    let state = from;
    while (!removed(state)) {
      const next = await this.revs.findOne({ _id: revisionId(id, state.n + 1) });
      if (!next) break;
      state = { n: state.n + 1, ns: parse(next.doc) };
    }
    return state;
  }

  /** The compare-and-set: true for the one writer of revision n. */
  private async insertRevision(id: string, n: number, ns: MetadefNamespace | null): Promise<boolean> {
    try {
      await this.revs.insertOne({ _id: revisionId(id, n), doc: ns && JSON.stringify(ns) });
      return true;
    } catch (err) {
      if (isDuplicate(err)) return false;
      throw err;
    }
  }

  /** Only a hint (racing winners may leave it a step behind): a failed write costs later reads a lookup. */
  private async writeHead(id: string, n: number, ns: MetadefNamespace | null): Promise<void> {
    await this.heads.replaceOne({ _id: id }, { n, doc: ns && JSON.stringify(ns) }).catch(() => undefined);
  }

  private async newestClaim(name: string): Promise<NameDoc | null> {
    const [claim] = await this.names.find({ name }).sort({ g: -1 }).limit(1).toArray();
    return claim ?? null;
  }

  /** Takes `name` for namespace `id`'s revision `rev`, or throws MetadefNameTakenError. */
  private async claimName(name: string, id: string, rev: number): Promise<void> {
    for (;;) {
      const held = await this.newestClaim(name);
      // This namespace's own claim for that revision (a racing writer's) or a later one: the revision insert decides.
      if (held?.ns_id === id && held.rev >= rev) return;
      if (held && (await this.holds(held))) {
        if (held.ns_id === id) return; // the namespace has the name already: `current` is stale and the insert fails
        throw new MetadefNameTakenError(name);
      }
      const g = (held?.g ?? 0) + 1;
      try {
        await this.names.insertOne({ _id: JSON.stringify([name, g]), name, g, ns_id: id, rev, at: Date.now() });
        return;
      } catch (err) {
        if (!isDuplicate(err)) throw err; // else another claim got g first: judge it
      }
    }
  }

  /** Whether the claim holds its name: its namespace carries the name, or its revision is under way. */
  private async holds(claim: NameDoc): Promise<boolean> {
    let state = await this.resolve(claim.ns_id);
    while (state.n < claim.rev && !removed(state)) {
      if (Date.now() - claim.at < IN_FLIGHT_MS) return true;
      // Its writer died (or stalls) between claim and revision: take that number, content unchanged, so its revision never lands.
      await this.insertRevision(claim.ns_id, state.n + 1, state.ns && { ...state.ns, revision: state.n + 1 });
      state = await this.forward(claim.ns_id, state);
    }
    return state.ns?.namespace === claim.name;
  }
}
