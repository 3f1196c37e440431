/**
 * ManifestStore on MongoDB (official driver) that is also correct on FerretDB v1.
 *
 * Why not `replaceOne({_id, revision: expected})`: FerretDB 1.x evaluates the filter of every
 * update, replace and findAndModify in a query, then writes the matched documents back by _id,
 * without holding anything in between. Two concurrent compare-and-sets on the same revision
 * both "match" and both write (measured: 5 of 8 concurrent writers won). The one operation it
 * makes atomic is an insert's unique-_id check (an SQLite UNIQUE constraint). So every write
 * goes through a journal in which the insert is the compare-and-set:
 *
 * - Each image document (collection `<collection>`, `_id` = image id) carries `pir_seq`, the
 *   number of writes applied to it, and `pir_inc`, a token drawn when it was created.
 * - A write (replace, or ackEvents) reads the current state at seq `s`, then inserts the journal
 *   entry `<id>:<inc>:<s>` holding the whole new document (seq s+1). The insert succeeds for
 *   exactly one writer of state `s`; the others get a duplicate key, read again and retry (an
 *   ack) or report the conflict (a replace whose expected revision is gone). Only then does the
 *   winner write the image document, unconditionally by _id.
 * - The image document may trail the journal for a moment (or, if the winner crashed between
 *   the two writes, until the next read repairs it). Reads that must be exact (get, replace,
 *   ackEvents, and the rows withPendingEvents/findStale return) follow the journal from the
 *   document's seq to the newest entry. list() reads the image documents as they are.
 * - An entry's document is dropped once KEEP_DOCS newer entries exist (KEEP_DOCS entries at a
 *   time, in one command); the entry itself stays
 *   (so its slot cannot be taken again) until it is older than JOURNAL_KEEP_MS, when no writer
 *   can still hold that head (see below), purged images' too: purge() takes the newest state's
 *   slot with a tombstone (`purged`), then deletes the image document.
 *
 * Also worked around (FerretDB 1.24, SQLite handler): `$pull` with a condition and
 * `$elemMatch` silently match nothing; every filter but `{_id: <string>}` costs a scan of the
 * collection (and `_id` did too until infra/local's patch of its SQLite backend), so hot paths
 * look up by _id only and the journal is kept short.
 * `pir_pending` is a top-level flag (true while the outbox holds events) for withPendingEvents.
 */
import { randomBytes } from 'node:crypto';
import { MongoClient } from 'mongodb';
import type { Collection, Filter, IndexDescription, Sort, WriteConcernSettings } from 'mongodb';
import { IMAGE_STATUSES, type ImageDoc, type ImageStatus } from '../../schemas/image.js';
import { listAccess, normalizeSort } from '../../core/list-access.js';
import { ManifestConflictError, RetiredIdError } from '../../core/ports.js';
import { imageWords, PREFIX_TOKEN_MAX, WORDS_VERSION, wordStarts } from '../../core/search.js';
import { GALLERY_PROPERTY } from '../../core/gallery-rules.js';
import type { ListQuery, ManifestStore, SortSpec, SortValue } from '../../core/ports.js';
import { manifestWrites } from '../telemetry/metrics.js';
import { monitoredClient } from './command-metrics.js';
import { deleteByIds, GroupWriter, writeFailure } from './group-writer.js';

export interface MongoManifestStoreOptions {
  /** mongodb:// URL. */
  url: string;
  /** Database (default: the one named in the URL's path, else 'pir'). */
  dbName?: string;
  /** Collection of image documents (default 'images'); the journal is `<collection>_journal`. */
  collection?: string;
  /** How long to wait for a reachable server before an operation fails (default 5000 ms). */
  serverSelectionTimeoutMs?: number;
  /** Default { w: 'majority', journal: true }: acknowledged writes survive a crash. */
  writeConcern?: WriteConcernSettings;
  /** Journal upkeep (tests shorten these): how long entries are kept, how long a remembered head is trusted, how often to prune. */
  journal?: { keepMs?: number; headMaxAgeMs?: number; pruneEveryWrites?: number; sweepEveryMs?: number };
}

/**
 * The image document as stored: the fields GET /v2/images filters and sorts on, at the top level;
 * the rest as one JSON text (`pir_packed`); its journal bookkeeping; and copies of what the list
 * filters on inside the document, in shapes an ordinary (multikey) index serves: `pir_props`
 * holds each extra property as the JSON text `["key","value"]`, `pir_members` each membership as
 * `["member_id","status"]` (JSON, so no key or value can forge another pair), `pir_words` the
 * keyword-search words and `pir_prefixes` their starts (core/search.ts).
 */
type Stored = Omit<ImageDoc, Packed> & Partial<Pick<ImageDoc, Packed>> & {
  _id: string; pir_pending: boolean; pir_seq: number; pir_inc: string; pir_props: string[]; pir_members: string[]; pir_words: string[]; pir_prefixes: string[]; pir_words_v: number;
  /** The packed parts, as JSON text (absent on documents written before it: see PACKED). */
  pir_packed?: string;
  /** Older documents: the user-keyed parts alone, as JSON text (the rest in place). */
  pir_user?: string;
};

/**
 * The parts of a document stored as one JSON text field: nothing queries inside them (properties
 * and members are matched through pir_props and pir_members, the outbox through pir_pending).
 * - Two must be: the users' own keys (extra property names, which Glance's common ones dot:
 *   org.openstack__1__os_distro; a registered location's metadata; a legacy import's input).
 *   FerretDB v1 refuses field names with '.' or a leading '$' (MongoDB 5+ takes them).
 * - The rest, because FerretDB decodes and encodes a document field by field on every read and
 *   write, in its own JSON with a type per value: the pipeline's progress, the outbox and the
 *   stores are most of a document's fields, and packed they cost it ~40% less CPU per find and
 *   replace (measured on its SQLite backend with an active image's ~2 KB document).
 * Documents written before packing keep these fields in place (and the user-keyed ones in
 * `pir_user`); they are read as they are and packed by their next write.
 */
const PACKED = [
  'properties', 'location', 'import_task', 'members', 'expected', 'upload', 'expired_upload', 'finished_upload', 'aborted_run', 'staging', 'pipeline', 'blob_key',
  'failure', 'stores', 'store_import', 'copy_tasks', 'earlier_tasks', 'share_links', 'share_link_uses', 'outbox',
] as const satisfies readonly (keyof ImageDoc)[];
type Packed = (typeof PACKED)[number];
const isPacked = new Set<string>(PACKED);

function propertyKey(key: string, value: string): string {
  return JSON.stringify([key, value]);
}

function memberKey(member: string, status: string): string {
  return JSON.stringify([member, status]);
}

/** The stored form of a document (the derived fields are rewritten with every write). */
function toStored(doc: ImageDoc, seq: number, inc: string): Stored {
  const top: Record<string, unknown> = {};
  const packed: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(doc)) (isPacked.has(key) ? packed : top)[key] = value;
  return {
    ...(top as Omit<ImageDoc, Packed>),
    pir_packed: JSON.stringify(packed),
    _id: doc.id,
    pir_pending: doc.outbox.length > 0,
    pir_seq: seq,
    pir_inc: inc,
    pir_props: Object.entries(doc.properties).map(([k, v]) => propertyKey(k, v)),
    pir_members: (doc.members ?? []).map((m) => memberKey(m.member_id, m.status)),
    // Keyword search (core/search.ts): the image's words, lowercased, under a multikey index.
    pir_words: imageWords(doc),
    // And each word's starts, so the last word of a query matches by equality (see listFilter).
    pir_prefixes: wordStarts(imageWords(doc)),
    // The tokenizer that made them: older words are rebuilt on start (addDerivedFields).
    pir_words_v: WORDS_VERSION,
  };
}

interface JournalEntry {
  /** `<image id>:<inc>:<seq it moved from>` */
  _id: string;
  image_id: string;
  seq: number;
  at: string;
  /**
   * The time bucket the entry was written in (ms since the epoch / the bucket length): a sweep
   * deletes the buckets that ended since the last one, a range MongoDB's `bucket` index serves
   * (FerretDB reads the whole journal for it, once a sweep, every sweepEveryMs).
   */
  bucket?: number;
  /**
   * The document after this write (seq + 1), as JSON text: nothing queries inside it, and
   * FerretDB decodes and encodes a nested document field by field (as text, an entry costs it
   * ~40% less CPU to insert). Entries written before hold it nested. Dropped once KEEP_DOCS
   * newer entries exist.
   */
  doc?: string | Stored;
  /** The image was purged in this state: the slot is taken so that no writer of it wins. */
  purged?: true;
}

/** An entry's document, in either form (undefined once dropped). */
function entryDoc(entry: JournalEntry | null | undefined): Stored | undefined {
  const doc = entry?.doc;
  return typeof doc === 'string' ? (JSON.parse(doc) as Stored) : doc;
}

/** Journal entries that keep their document behind the newest one. */
const KEEP_DOCS = 4;
/** An image document trailing its journal for longer than this is repaired by readers. */
const REPAIR_AFTER_MS = 2000;
const WRITE_RETRIES = 100;
const HEAD_CACHE_SIZE = 10_000;
/**
 * FerretDB's SQLite backend scans the collection for every filter but an `_id` (unpatched, even
 * for `_id`), decoding every entry, so the journal is kept short: entries older than
 * JOURNAL_KEEP_MS are deleted. That is safe because no writer holds a head that old: remembered
 * heads expire after HEAD_MAX_AGE_MS, and a write from a freshly read head takes seconds at worst. An entry whose writer died before
 * updating the image document is repaired by the next read within REPAIR_AFTER_MS; if it is
 * pruned first, its write was never acknowledged to anyone (as if the writer died before it).
 */
const JOURNAL_KEEP_MS = 120_000;
const HEAD_MAX_AGE_MS = 30_000;
const PRUNE_EVERY_WRITES = 100;
/**
 * A process deletes its own old entries by _id (an index lookup even on FerretDB's SQLite
 * backend); the sweep of whole buckets, which also takes the entries of writers that died
 * (and on FerretDB's SQLite backend scans the journal), runs this often (default 5 × keep).
 */
const SWEEP_EVERY_KEEPS = 5;
/** Own entries remembered for deletion by _id, at most (beyond that the sweep takes them). */
const OWN_ENTRIES_MAX = 50_000;
/** Lookups in flight at once when withPendingEvents/findStale bring their rows up to date. */
const FRESH_PARALLEL = 16;

/** `mongodb://h1,h2/db?opts` → `db` (the URL class cannot parse multi-host URLs). */
function dbNameFromUrl(url: string): string | null {
  const m = /^mongodb(?:\+srv)?:\/\/[^/]*\/([^?]+)/.exec(url);
  return m?.[1] ? decodeURIComponent(m[1]) : null;
}

function journalId(id: string, inc: string, seq: number): string {
  return `${id}:${inc}:${seq}`;
}

function fromStored(stored: Stored): ImageDoc {
  const { _id, pir_pending, pir_seq, pir_inc, pir_props, pir_members, pir_words, pir_prefixes, pir_words_v, pir_user, pir_packed, ...doc } = stored;
  void _id; void pir_pending; void pir_seq; void pir_inc; void pir_props; void pir_members; void pir_words; void pir_prefixes; void pir_words_v;
  const unpack = (text: string | undefined) => (text === undefined ? {} : (JSON.parse(text) as Partial<Pick<ImageDoc, Packed>>));
  // A field in place wins over a packed one (only a document edited by hand has both).
  return { ...unpack(pir_user), ...unpack(pir_packed), ...doc } as ImageDoc;
}

/**
 * Creates the indexes that do not exist yet. FerretDB 1.24 drops the connection (a server-side
 * panic) when createIndexes names indexes that already exist, as every process start after the
 * first would; asking first avoids it, and is harmless on MongoDB.
 */
async function ensureIndexes(collection: Collection<any>, specs: IndexDescription[]): Promise<void> {
  const existing = new Set((await collection.listIndexes().toArray().catch(() => [])).map((i) => i.name as string));
  const missing = specs.filter((spec) => !existing.has(spec.name!));
  if (missing.length > 0) await collection.createIndexes(missing);
}

/**
 * FerretDB's SQLite backend answers SQLITE_BUSY when the database stays locked past its busy
 * timeout. Its transactions begin IMMEDIATE (infra/local), so a busy error means nothing was
 * written: trying again is safe. Any other error (even a dropped connection, where the write may
 * have happened) is passed on.
 */
async function whenNotBusy<T>(write: () => Promise<T>, attempts = 8): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await write();
    } catch (err) {
      if (attempt >= attempts || !writeFailure(err).message.includes('SQLITE_BUSY')) throw err;
      await new Promise((resolve) => setTimeout(resolve, 20 * 2 ** attempt * (0.5 + Math.random())));
    }
  }
}

function isDuplicateKey(err: unknown): boolean {
  return writeFailure(err).code === 11000;
}

function field(key: string): string {
  return key === 'id' ? '_id' : key;
}

/** Equality for one value ($in of one value is the same match, and FerretDB v1 hands only equality to its backend). */
function oneOf(values: readonly unknown[]): unknown {
  return values.length === 1 ? values[0] : { $in: values };
}

/**
 * `{$and: clauses}` with every plain equality it can hold moved to the top level of the filter
 * (the first clause per field; the rest stay in `$and`). The same match on MongoDB; FerretDB 1.24
 * hands exactly the top-level equalities on strings and booleans to its backend (PostgreSQL:
 * `_jsonb->'field' @> value`, served by the GIN index infra/local/postgres-ferretdb.sql adds, an
 * array field matching when it holds the value) and decodes only the rows those return, where a
 * filter inside `$and` makes it read and decode every document of the collection.
 */
function hoistEqualities(clauses: object[]): Filter<Stored> {
  const top: Record<string, unknown> = {};
  const rest: object[] = [];
  for (const clause of clauses) {
    const entries = Object.entries(clause);
    const [key, value] = entries[0] ?? [];
    if (entries.length === 1 && key !== undefined && !key.startsWith('$') && !(key in top) && (typeof value === 'string' || typeof value === 'boolean')) top[key] = value;
    else rest.push(clause);
  }
  if (rest.length > 0) top.$and = rest;
  return top as Filter<Stored>;
}

/**
 * The find() filter and sort of list(): plain equality, $in, ranges, $or and $and on top-level
 * fields and on the derived arrays (no $elemMatch, $text or aggregation: FerretDB v1 runs these),
 * with its plain equalities at the top level (hoistEqualities).
 */
export function listFilter(query: ListQuery): { filter: Filter<Stored>; sort: Sort } {
  const and: object[] = [];
  const access = listAccess(query);
  // Keyword search first, so its most selective equalities are the ones hoisted: the longest
  // exact word (likely the rarest) and the last word's start, on two fields the backend intersects.
  if (query.search) {
    const { words, prefix } = query.search;
    for (const word of [...words].sort((a, b) => b.length - a.length)) and.push({ pir_words: word });
    const start = [...prefix].slice(0, PREFIX_TOKEN_MAX).join('');
    and.push({ pir_prefixes: start });
    if (start !== prefix) and.push({ pir_words: { $regex: `^${escapeRegex(prefix)}` } });
  }
  if (access.visibilityIn) and.push({ visibility: oneOf(access.visibilityIn) });
  if (access.anyOf) {
    and.push({
      $or: access.anyOf.map((term) => {
        switch (term.kind) {
          case 'owner': return { owner: term.owner };
          case 'visibility': return { visibility: oneOf(term.visibilities) };
          case 'member': return { visibility: 'shared', pir_members: { $in: term.statuses.map((st) => memberKey(term.member, st)) } };
          case 'gallery': return { pir_props: oneOf(term.galleries.map((g) => propertyKey(GALLERY_PROPERTY, g))) };
        }
      }),
    });
  }
  for (const [key, value] of Object.entries(query.where)) {
    if (value === undefined) continue;
    and.push({ [field(key)]: Array.isArray(value) ? oneOf(value) : value });
  }
  if (query.sizeMin !== undefined) and.push({ size: { $gte: query.sizeMin } });
  if (query.sizeMax !== undefined) and.push({ size: { $lte: query.sizeMax } });
  for (const t of query.times ?? []) {
    const range: Record<string, string> = {};
    if (t.gte !== undefined) range.$gte = t.gte;
    if (t.lt !== undefined) range.$lt = t.lt;
    if (!t.negate) {
      if (Object.keys(range).length) and.push({ [t.field]: range });
    }
    else {
      const outside: object[] = [];
      if (t.gte !== undefined) outside.push({ [t.field]: { $lt: t.gte } });
      if (t.lt !== undefined) outside.push({ [t.field]: { $gte: t.lt } });
      and.push(outside.length ? { $or: outside } : { _id: { $in: [] } });
    }
  }
  for (const [k, v] of Object.entries(query.properties ?? {})) and.push({ pir_props: propertyKey(k, v) });
  for (const tag of query.tags ?? []) and.push({ tags: tag });
  if (query.galleryIn) and.push({ pir_props: oneOf(query.galleryIn.map((g) => propertyKey(GALLERY_PROPERTY, g))) });
  const sort = normalizeSort(query.sort);
  if (query.after) and.push(keysetFilter(sort, query.after));
  const filter = hoistEqualities(and);
  const order: Record<string, 1 | -1> = {};
  for (const s of sort) order[field(s.key)] = s.dir === 'desc' ? -1 : 1;
  return { filter, sort: order };
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** "Strictly after this row" in the order of `sort` (nulls first ascending, last descending). */
function keysetFilter(sort: SortSpec[], after: SortValue[]): object {
  if (after.length !== sort.length) throw new Error(`list: the keyset has ${after.length} values for ${sort.length} sort keys`);
  const ors: object[] = [];
  for (let i = 0; i < sort.length; i++) {
    const ands: object[] = [];
    for (let j = 0; j < i; j++) ands.push({ [field(sort[j]!.key)]: after[j] ?? null });
    const k = field(sort[i]!.key);
    const v = after[i] ?? null;
    const desc = sort[i]!.dir === 'desc';
    if (v === null) {
      if (desc) continue; // nothing sorts after a null descending
      ands.push({ [k]: { $ne: null } });
    } else if (desc) {
      ands.push({ $or: [{ [k]: { $lt: v } }, { [k]: null }] });
    } else {
      ands.push({ [k]: { $gt: v } });
    }
    ors.push(ands.length === 1 ? ands[0]! : { $and: ands });
  }
  return ors.length ? { $or: ors } : { _id: { $in: [] } };
}

interface Resolved {
  /** The newest state: the image document, or the journal's newest entry beyond it. */
  head: Stored;
  /** When the newest journal entry the image document has not caught up with was written. */
  trailingSince: string | null;
}

export class MongoManifestStore implements ManifestStore {
  private readonly client: MongoClient;
  private readonly col: Collection<Stored>;
  private readonly journal: Collection<JournalEntry>;
  /** Ids of purged images (OSSN-0075: never given to another image). */
  private readonly retired: Collection<{ _id: string; retired_at: string }>;
  /**
   * The writes every image change makes (its journal entry, then its document) go out in group
   * commits: what other images' changes queue meanwhile shares the next command. Measured on
   * FerretDB 1.24/SQLite with ~2 KB documents, 8 writers: an insert costs it 1.41 ms of CPU alone,
   * 0.69 in fours; a replace 2.94 alone, 2.11 in fours.
   */
  private readonly journalInserts: GroupWriter<JournalEntry>;
  private readonly docWrites: GroupWriter<Stored>;
  private ready: Promise<void> | null = null;
  /** The newest head this process has seen per image (bounded): a hint for the next write. */
  private readonly heads = new Map<string, { head: Stored; at: number }>();
  private writesSincePrune = 0;
  /** Journal buckets below this one were swept by this process (null: not yet). */
  private prunedBelow: number | null = null;
  private nextSweepAt = 0;
  /** The journal entries this process wrote and has not deleted yet, by bucket. */
  private readonly ownEntries = new Map<number, string[]>();
  private ownEntryCount = 0;
  private readonly upkeep: { keepMs: number; headMaxAgeMs: number; pruneEveryWrites: number; sweepEveryMs: number };
  private closed = false;

  constructor(opts: MongoManifestStoreOptions) {
    this.upkeep = {
      keepMs: opts.journal?.keepMs ?? JOURNAL_KEEP_MS,
      headMaxAgeMs: opts.journal?.headMaxAgeMs ?? HEAD_MAX_AGE_MS,
      pruneEveryWrites: opts.journal?.pruneEveryWrites ?? PRUNE_EVERY_WRITES,
      sweepEveryMs: opts.journal?.sweepEveryMs ?? SWEEP_EVERY_KEEPS * (opts.journal?.keepMs ?? JOURNAL_KEEP_MS),
    };
    if (this.upkeep.headMaxAgeMs >= this.upkeep.keepMs) throw new Error('journal.headMaxAgeMs must be shorter than journal.keepMs');
    this.client = monitoredClient(opts.url, 'manifest', {
      serverSelectionTimeoutMS: opts.serverSelectionTimeoutMs ?? 5000,
      ignoreUndefined: true,
      writeConcern: opts.writeConcern ?? { w: 'majority', journal: true },
    });
    const db = this.client.db(opts.dbName ?? dbNameFromUrl(opts.url) ?? 'pir');
    const name = opts.collection ?? 'images';
    this.col = db.collection<Stored>(name);
    this.journal = db.collection<JournalEntry>(`${name}_journal`);
    this.retired = db.collection<{ _id: string; retired_at: string }>(`${name}_retired_ids`);
    this.journalInserts = new GroupWriter(this.journal, this.client);
    this.docWrites = new GroupWriter(this.col, this.client);
  }

  /** Connects and creates the indexes; every operation calls it, so calling it is optional. */
  async start(): Promise<void> {
    if (this.closed) throw new Error('manifest store is closed');
    if (!this.ready) {
      this.ready = (async () => {
        await this.client.connect();
        await ensureIndexes(this.col, [
          { key: { pir_pending: 1, updated_at: 1 }, name: 'pending_updated' },
          { key: { status: 1, updated_at: 1 }, name: 'status_updated' },
          { key: { created_at: 1, _id: 1 }, name: 'created' },
          { key: { updated_at: 1, _id: 1 }, name: 'updated' },
          { key: { owner: 1 }, name: 'owner' },
          { key: { name: 1 }, name: 'name' },
          { key: { visibility: 1 }, name: 'visibility' },
          // Glance's checksum_image_idx and os_hash_value_image_idx (GET /v2/images?checksum=, ?os_hash_value=).
          { key: { checksum: 1 }, name: 'checksum' },
          { key: { os_hash_value: 1 }, name: 'os_hash_value' },
          // GET /v2/images filters (README "MongoDB, and FerretDB"): multikey indexes on the derived arrays.
          { key: { pir_props: 1 }, name: 'list_props' },
          { key: { tags: 1 }, name: 'list_tags' },
          { key: { pir_members: 1 }, name: 'list_members' },
          { key: { pir_words: 1 }, name: 'list_words' },
          { key: { pir_prefixes: 1 }, name: 'list_prefixes' },
        ]);
        await ensureIndexes(this.journal, [{ key: { image_id: 1, seq: 1 }, name: 'image_seq' }, { key: { bucket: 1 }, name: 'bucket' }]);
        await this.addDerivedFields();
      })();
      this.ready.catch(() => { this.ready = null; }); // let the next call try again
    }
    return this.ready;
  }

  async create(doc: ImageDoc, opts: { chosenId?: boolean } = {}): Promise<void> {
    await this.start();
    // Ids PIR generated are random UUIDs: only an id the client chose can be a retired one.
    const isRetired = async () => opts.chosenId === true && (await whenNotBusy(() => this.retired.findOne({ _id: doc.id }))) !== null;
    if (await isRetired()) throw new RetiredIdError(doc.id);
    const stored = toStored(doc, 0, randomBytes(6).toString('hex'));
    try {
      await whenNotBusy(() => this.docWrites.write({ insertOne: { document: stored } }));
    } catch (err) {
      if (isDuplicateKey(err)) throw new ManifestConflictError(doc.id);
      throw err;
    }
    // Purged between the check and the insert: purge() retires the id before it deletes, so
    // asking again after the insert sees it, and this insert is taken back.
    if (await isRetired()) {
      await this.removeDocument(doc.id);
      throw new RetiredIdError(doc.id);
    }
    this.remember(stored);
  }

  /**
   * Inserts many new documents at once (benchmarks and imports: the same stored form as
   * create(), in batches). Rejects on a duplicate id; documents before it are written.
   */
  async createMany(docs: ImageDoc[]): Promise<void> {
    await this.start();
    for (let i = 0; i < docs.length; i += 1000) {
      const batch = docs.slice(i, i + 1000).map((d) => toStored(d, 0, randomBytes(6).toString('hex')));
      try {
        await whenNotBusy(() => this.col.insertMany(batch, { ordered: true }));
      } catch (err) {
        if (isDuplicateKey(err)) throw new ManifestConflictError('one of the documents');
        throw err;
      }
    }
  }

  /** The newest state this process saw (its own write or read), if still trusted (trustedHead). */
  peek(id: string): ImageDoc | null {
    const head = this.trustedHead(id);
    return head ? fromStored(head) : null;
  }

  forget(id: string): void {
    this.heads.delete(id);
  }

  async get(id: string): Promise<ImageDoc | null> {
    await this.start();
    const r = await this.resolve(id);
    return r ? fromStored(r.head) : null;
  }

  async list(query: ListQuery): Promise<ImageDoc[]> {
    await this.start();
    const limit = Math.max(0, Math.floor(query.limit));
    if (limit === 0) return []; // limit(0) means "no limit" to MongoDB
    const { filter, sort } = listFilter(query);
    const docs = await this.col.find(filter).sort(sort).limit(limit).toArray();
    return docs.map(fromStored);
  }

  async count(query: ListQuery): Promise<number> {
    await this.start();
    const { filter } = listFilter({ ...query, after: undefined });
    return this.col.countDocuments(filter);
  }

  async replace(doc: ImageDoc, expectedRevision: number): Promise<boolean> {
    await this.start();
    return this.write(doc.id, 'update', (head) => (head.revision === expectedRevision ? doc : null));
  }

  /**
   * The image document alone (one command; get() reads the journal too) when it passes the
   * caller's check. It is remembered as a compare-and-set base unless this process knows a newer
   * state: trailing its journal, it loses the journal insert like any race and is read again.
   */
  async getRecent(id: string, isRecentEnough: (doc: ImageDoc) => boolean): Promise<ImageDoc | null> {
    await this.start();
    const main = await this.col.findOne({ _id: id });
    if (!main) return null;
    const doc = fromStored(main);
    if (!isRecentEnough(doc)) return this.get(id);
    const known = this.heads.get(id)?.head;
    if (!known || known.pir_inc !== main.pir_inc || known.pir_seq < main.pir_seq) this.remember(main);
    return doc;
  }

  async ackEvents(id: string, eventIds: string[], addedBy?: number): Promise<void> {
    if (eventIds.length === 0) return;
    await this.start();
    const drop = new Set(eventIds);
    const unchanged = (head: ImageDoc) => !head.outbox.some((e) => drop.has(e.id));
    let start: Stored | undefined;
    if (addedBy !== undefined && !this.trustedHead(id)) {
      // This process has no head of its own (another wrote since: a worker's next stage, or its
      // settling write): the image document alone usually settles it. A state at or after the
      // write that added the events, without them, had them dropped; an older one (the document
      // may trail its journal) proves nothing, and the write below follows the journal.
      const main = await this.col.findOne({ _id: id });
      if (!main) return;
      if (main.revision >= addedBy && unchanged(fromStored(main))) return;
      start = main;
    }
    await this.write(id, 'ack', (stored) => {
      const head = fromStored(stored);
      return unchanged(head) ? null : { ...head, outbox: head.outbox.filter((e) => !drop.has(e.id)) };
    }, start);
  }

  async withPendingEvents(updatedBefore: string, limit: number): Promise<ImageDoc[]> {
    await this.start();
    const n = Math.max(0, Math.floor(limit));
    if (n === 0) return [];
    const docs = await this.col.find({ pir_pending: true, updated_at: { $lt: updatedBefore } }).sort({ updated_at: 1, _id: 1 }).limit(n).toArray();
    return this.fresh(docs, (d) => d.outbox.length > 0 && d.updated_at < updatedBefore);
  }

  async findStale(statuses: ImageStatus[], updatedBefore: string, limit: number): Promise<ImageDoc[]> {
    await this.start();
    const n = Math.max(0, Math.floor(limit));
    if (n === 0 || statuses.length === 0) return [];
    // One query per status, merged: plain equality is what FerretDB 1.x hands to its backend's
    // index; `status: {$in}` scans every image document in FerretDB (the sweepers run this often).
    const perStatus = await Promise.all([...new Set(statuses)].map((status) =>
      this.col.find({ status, updated_at: { $lt: updatedBefore } }).sort({ updated_at: 1, _id: 1 }).limit(n).toArray()));
    const docs = perStatus.flat().sort((a, b) => (a.updated_at < b.updated_at ? -1 : a.updated_at > b.updated_at ? 1 : a._id < b._id ? -1 : a._id > b._id ? 1 : 0)).slice(0, n);
    return this.fresh(docs, (d) => statuses.includes(d.status) && d.updated_at < updatedBefore);
  }

  /**
   * The image documents per status (as they are, like list()), in one pass over the collection.
   * Nine counts on the status index would be cheaper on MongoDB, but FerretDB reads and decodes
   * every document for any filter but `_id`, so there each count was a scan (measured at 2,000
   * images on its SQLite backend: 12 s of its CPU for the nine, 1.4 s for this). Its callers
   * (gauges, the ops stream) are paced by how long it takes (infra/pacing.ts).
   */
  async countByStatus(): Promise<Record<ImageStatus, number>> {
    await this.start();
    const counts = Object.fromEntries(IMAGE_STATUSES.map((status) => [status, 0])) as Record<ImageStatus, number>;
    const rows = await this.col.aggregate<{ _id: unknown; n: number }>([{ $group: { _id: '$status', n: { $sum: 1 } } }]).toArray();
    for (const { _id, n } of rows) if (typeof _id === 'string' && Object.hasOwn(counts, _id)) counts[_id as ImageStatus] = n;
    return counts;
  }

  async countPendingEvents(): Promise<number> {
    await this.start();
    return this.col.countDocuments({ pir_pending: true });
  }

  async ping(): Promise<void> {
    await this.start();
    await this.client.db('admin').command({ ping: 1 });
  }

  /**
   * Retires the id, then takes the journal slot of the image's newest state with a tombstone
   * before deleting the document: a writer holding that state (an upload finishing on another
   * api) loses its insert and finds the image gone. Its entries stay for the age-based prune:
   * deleting them freed slots that a writer holding an older state then won, so that its write
   * "succeeded" on a purged image (an upload answered 204 after its image was deleted).
   */
  async purge(id: string): Promise<void> {
    await this.start();
    await this.retired.updateOne({ _id: id }, { $setOnInsert: { retired_at: new Date().toISOString() } }, { upsert: true });
    for (let attempt = 0; attempt < WRITE_RETRIES; attempt++) {
      const resolved = await this.resolve(id);
      if (!resolved) break;
      const { head } = resolved;
      const entryId = journalId(id, head.pir_inc, head.pir_seq);
      const bucket = this.bucketOf(Date.now());
      try {
        await whenNotBusy(() => this.journalInserts.write({ insertOne: { document: { _id: entryId, image_id: id, seq: head.pir_seq, at: new Date().toISOString(), bucket, purged: true } } }));
      } catch (err) {
        if (isDuplicateKey(err)) continue; // written meanwhile (an ack): tombstone the newer state
        throw err;
      }
      this.rememberOwnEntry(bucket, entryId);
      break;
    }
    this.heads.delete(id);
    await this.col.deleteOne({ _id: id });
  }

  private async removeDocument(id: string): Promise<void> {
    this.heads.delete(id);
    await this.journal.deleteMany({ image_id: id });
    await this.col.deleteOne({ _id: id });
    await this.journal.deleteMany({ image_id: id }); // entries a racing writer added meanwhile
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.client.close();
  }

  /**
   * The compare-and-set loop. `next` returns the new document for the current head, or null to
   * write nothing. Returns whether this call's write won.
   */
  private async write(id: string, kind: 'update' | 'ack' | 'upgrade', next: (head: Stored) => ImageDoc | null, start?: Stored): Promise<boolean> {
    // First try `start` or the head this process saw last: its journal slot is free only if
    // nobody wrote since, so the insert itself checks that, and a hit saves the two reads of resolve().
    let known: Stored | undefined = start ?? this.trustedHead(id);
    for (let attempt = 0; attempt < WRITE_RETRIES; attempt++) {
      let head: Stored;
      const fromCache = known !== undefined;
      if (known) {
        head = known;
        known = undefined;
      } else {
        const r = await this.resolve(id);
        if (!r) return false;
        head = r.head;
      }
      const doc = next(head);
      if (!doc) {
        if (fromCache) continue; // the remembered head may be stale: look again
        if (kind === 'update') manifestWrites.inc({ kind, outcome: 'lost' });
        return false;
      }
      const stored = toStored({ ...doc, id }, head.pir_seq + 1, head.pir_inc);
      const entryId = journalId(id, head.pir_inc, head.pir_seq);
      const bucket = this.bucketOf(Date.now());
      try {
        await whenNotBusy(() => this.journalInserts.write({ insertOne: { document: { _id: entryId, image_id: id, seq: head.pir_seq, at: new Date().toISOString(), bucket, doc: JSON.stringify(stored) } } }));
      } catch (err) {
        if (isDuplicateKey(err)) {
          manifestWrites.inc({ kind, outcome: 'lost' });
          continue; // someone else wrote state `seq` first: look again
        }
        throw err;
      }
      this.remember(stored);
      this.rememberOwnEntry(bucket, entryId);
      this.pruneNowAndThen();
      // Drop old entries' documents KEEP_DOCS at a time (one command per KEEP_DOCS writes):
      // entries head-2K+1 … head-K, each with at least KEEP_DOCS newer entries after it.
      const compact: string[] = [];
      if (head.pir_seq % KEEP_DOCS === KEEP_DOCS - 1) {
        for (let seq = Math.max(0, head.pir_seq - 2 * KEEP_DOCS + 1); seq <= head.pir_seq - KEEP_DOCS; seq++) compact.push(journalId(id, head.pir_inc, seq));
      }
      await Promise.all([
        whenNotBusy(() => this.docWrites.write({ replaceOne: { filter: { _id: id }, replacement: stored } })),
        compact.length > 0 ? whenNotBusy(() => this.compact(compact)) : null,
      ]);
      manifestWrites.inc({ kind, outcome: 'won' });
      return true;
    }
    throw new Error(`manifest ${id}: gave up after ${WRITE_RETRIES} contended writes`);
  }

  /**
   * Drops the documents of these journal entries: one update command holding one statement per
   * entry, each filtered on `_id` alone. Not `updateMany({_id: {$in}})`: FerretDB 1.x pushes only
   * plain equality down to its backend, so `$in` reads and decodes the whole journal in FerretDB
   * (measured on PostgreSQL with 500 entries: 65 ms of FerretDB CPU against 3 ms for this).
   */
  private async compact(ids: string[]): Promise<void> {
    await this.journal.bulkWrite(ids.map((_id) => ({ updateOne: { filter: { _id }, update: { $unset: { doc: '' } } } })), { ordered: false });
  }

  /**
   * Documents written before the list fields existed, or whose search words an older tokenizer
   * made (`pir_words_v` below core/search.ts WORDS_VERSION, or none), get them, once, through an
   * ordinary compare-and-set write of the same document (so a concurrent writer is never overwritten).
   */
  private async addDerivedFields(): Promise<void> {
    const old = await this.col.find({ $or: [{ pir_props: { $exists: false } }, { pir_words: { $exists: false } }, { pir_prefixes: { $exists: false } }, { pir_words_v: { $ne: WORDS_VERSION } }] }, { projection: { _id: 1 } }).toArray();
    for (const { _id } of old) await this.write(_id, 'upgrade', (head) => fromStored(head));
  }

  /** Journal buckets are a quarter of the keep time (at most a minute), so an entry lives keepMs to 1.25 × keepMs. */
  private bucketOf(ms: number): number {
    return Math.floor(ms / Math.min(60_000, Math.max(1, Math.floor(this.upkeep.keepMs / 4))));
  }

  /**
   * Deletes journal entries older than JOURNAL_KEEP_MS, once every PRUNE_EVERY_WRITES writes:
   * this process's own entries by _id, in commands of MAX_STATEMENTS deletes (deleteByIds); and every
   * sweepEveryMs a sweep: the whole buckets that ended before then and this process has not
   * swept yet (entries of other writers, dead ones included), in one delete. The first sweep
   * deletes by `at` instead (every older bucket, and entries written before buckets existed).
   */
  private pruneNowAndThen(): void {
    if (++this.writesSincePrune < this.upkeep.pruneEveryWrites) return;
    this.writesSincePrune = 0;
    const now = Date.now();
    const upTo = this.bucketOf(now - this.upkeep.keepMs); // that bucket still holds young entries
    void this.deleteOwnEntries(upTo).catch(() => {}); // what fails is left to the sweep
    if (now < this.nextSweepAt) return;
    this.nextSweepAt = now + this.upkeep.sweepEveryMs;
    const from = this.prunedBelow;
    if (from !== null && from >= upTo) return;
    this.prunedBelow = upTo;
    // One command a sweep (on FerretDB's SQLite backend every filter but _id scans the journal,
    // so a delete per bucket was a scan per bucket: nine at each process's start).
    const old = from === null
      ? { at: { $lt: new Date(now - this.upkeep.keepMs).toISOString() } } // every bucket below upTo, and entries from before buckets
      : { bucket: { $gte: from, $lt: upTo } };
    void this.journal.deleteMany(old).catch(() => { this.prunedBelow = from; }); // the next sweep tries again
  }

  private rememberOwnEntry(bucket: number, entryId: string): void {
    if (this.ownEntryCount >= OWN_ENTRIES_MAX) return;
    const ids = this.ownEntries.get(bucket);
    if (ids) ids.push(entryId);
    else this.ownEntries.set(bucket, [entryId]);
    this.ownEntryCount++;
  }

  private async deleteOwnEntries(belowBucket: number): Promise<void> {
    const due: string[] = [];
    for (const [bucket, ids] of this.ownEntries) {
      if (bucket >= belowBucket) continue;
      due.push(...ids);
      this.ownEntries.delete(bucket);
    }
    this.ownEntryCount -= due.length;
    await deleteByIds(this.journal, due);
  }

  /** The head this process saw last, while it is young enough to be trusted as a compare-and-set base. */
  private trustedHead(id: string): Stored | undefined {
    const remembered = this.heads.get(id);
    return remembered && Date.now() - remembered.at < this.upkeep.headMaxAgeMs ? remembered.head : undefined;
  }

  private remember(head: Stored): void {
    this.heads.delete(head._id);
    this.heads.set(head._id, { head, at: Date.now() });
    if (this.heads.size > HEAD_CACHE_SIZE) this.heads.delete(this.heads.keys().next().value!);
  }


  /** The newest state of an image: its document, followed through the journal. */
  private async resolve(id: string): Promise<Resolved | null> {
    for (let pass = 0; pass < 3; pass++) {
      const main = await this.col.findOne({ _id: id });
      if (!main) return null;
      let head = main;
      let trailingSince: string | null = null;
      let compacted = false;
      for (;;) {
        const entry = await this.journal.findOne({ _id: journalId(id, head.pir_inc, head.pir_seq) });
        if (!entry) break;
        if (entry.purged) return null; // its document is being deleted
        const next = entryDoc(entry);
        if (!next) {
          compacted = true; // our read of the image document is older than its compaction: read again
          break;
        }
        head = next;
        trailingSince = entry.at;
      }
      if (compacted) continue;
      if (trailingSince !== null && Date.now() - Date.parse(trailingSince) > REPAIR_AFTER_MS) {
        // The writer of that entry died before it updated the image document: finish its work.
        await whenNotBusy(() => this.col.replaceOne({ _id: id }, head));
      }
      this.remember(head);
      return { head, trailingSince };
    }
    return this.rebuild(id);
  }

  /**
   * Last resort: the image document is older than every journal entry that still holds a
   * document (it was overwritten by a writer delayed across KEEP_DOCS later writes). The newest
   * journal entry with a document is the truth; follow it and rewrite the image document.
   */
  private async rebuild(id: string): Promise<Resolved | null> {
    const main = await this.col.findOne({ _id: id });
    if (!main) return null;
    const newest = entryDoc(await this.journal.find({ image_id: id, doc: { $exists: true } }).sort({ seq: -1 }).limit(1).next());
    let head = newest && newest.pir_inc === main.pir_inc && newest.pir_seq > main.pir_seq ? newest : main;
    for (;;) {
      const entry = await this.journal.findOne({ _id: journalId(id, head.pir_inc, head.pir_seq) });
      if (entry?.purged) return null;
      const next = entryDoc(entry);
      if (!next) break;
      head = next;
    }
    if (head !== main) await whenNotBusy(() => this.col.replaceOne({ _id: id }, head));
    return { head, trailingSince: null };
  }

  /** Replaces query results by their newest state, dropping those that no longer qualify. */
  private async fresh(docs: Stored[], stillMatches: (d: ImageDoc) => boolean): Promise<ImageDoc[]> {
    const heads: (Resolved | null)[] = [];
    for (let i = 0; i < docs.length; i += FRESH_PARALLEL) {
      heads.push(...await Promise.all(docs.slice(i, i + FRESH_PARALLEL).map((d) => this.resolve(d._id))));
    }
    return heads.filter((r): r is Resolved => r !== null).map((r) => fromStored(r.head)).filter(stillMatches);
  }
}
