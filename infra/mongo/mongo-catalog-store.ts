/**
 * CatalogStore on MongoDB, within FerretDB v1's limits: the one atomic check FerretDB 1.x makes
 * is an insert's unique _id (see mongo-manifest-store.ts), so that is what every uniqueness
 * rests on:
 * - a sibling name is claimed by inserting `gallery_names` {_id: [owner, parent, name]}; a rename
 *   or move claims the new name before releasing the old one;
 * - revision n of an image is the insert of {_id: "<image>:<n>"}; a writer that loses the race
 *   for n takes n + 1.
 *
 * Revisions are found by `_id` alone (FerretDB's SQLite backend scans the collection for any
 * other filter, and the collection holds every image's history: at 2,000 images a PATCH's two
 * "newest revision" queries cost it 0.7 s of CPU). An image's revisions are always the numbers
 * oldest..newest without a gap (appends take the next free number, pruning removes from the
 * bottom), so the newest is found by stepping forward from a hint: this process's last seen
 * number, or the image's `image_revision_heads` document, written after each append past the first.
 */
import { MongoClient, type Collection } from 'mongodb';
import { GalleryNameTakenError, type CatalogStore, type Gallery, type GalleryMember, type Revision } from '../../core/catalog-ports.js';
import { deleteByIds, GroupWriter, MAX_STATEMENTS, writeFailure } from './group-writer.js';
import { monitoredClient } from './command-metrics.js';
import { MongoLeases } from './mongo-lease.js';

type GalleryDoc = Omit<Gallery, 'id'> & { _id: string };
type NameDoc = { _id: string; gallery_id: string };
/**
 * A revision as stored: its patch and metadata hold the users' property names, which FerretDB v1
 * refuses as field names when dotted or `$`-led, so they are JSON text (`pir_json`; revisions
 * written before it hold them in place). Nothing queries inside them.
 */
type RevisionDoc = Omit<Revision, 'patch' | 'metadata'> & Partial<Pick<Revision, 'patch' | 'metadata'>> & { _id: string; pir_json?: string };
type MemberDoc = GalleryMember & { _id: string };
/** A hint, never behind by more than the appends since it was written: the newest revision's number. */
type HeadDoc = { _id: string; n: number };

const toGallery = ({ _id, ...rest }: GalleryDoc): Gallery => ({ id: _id, ...rest });
const nameKey = (g: Pick<Gallery, 'owner' | 'parent_id' | 'name'>) => JSON.stringify([g.owner, g.parent_id ?? '', g.name]);
const revisionId = (imageId: string, n: number) => `${imageId}:${String(n).padStart(10, '0')}`;
const memberId = (galleryId: string, member: string) => JSON.stringify([galleryId, member]);
const toMember = ({ _id, ...rest }: MemberDoc): GalleryMember => (void _id, rest);
const isDuplicate = (err: unknown) => writeFailure(err).code === 11000;
const APPEND_RETRIES = 100;
/** Revisions by `_id` per delete command when pruning or dropping, and read at once when listing (group-writer.ts). */
const ID_BATCH = MAX_STATEMENTS;

function toRevision(doc: RevisionDoc): Revision {
  const { _id, pir_json: json, ...rest } = doc;
  void _id;
  return (json === undefined ? rest : { ...rest, ...(JSON.parse(json) as Pick<Revision, 'patch' | 'metadata'>) }) as Revision;
}

function revisionDoc(revision: Revision): RevisionDoc {
  const { patch, metadata, ...rest } = revision;
  return { _id: revisionId(revision.image_id, revision.n), ...rest, pir_json: JSON.stringify({ patch, metadata }) };
}

export class MongoCatalogStore implements CatalogStore {
  private readonly client: MongoClient;
  private readonly galleries: Collection<GalleryDoc>;
  private readonly names: Collection<NameDoc>;
  private readonly revs: Collection<RevisionDoc>;
  /** Every metadata change inserts a revision (a new image its first): by group commit, as the manifest writes (group-writer.ts). */
  private readonly revisionInserts: GroupWriter<RevisionDoc>;
  private readonly members: Collection<MemberDoc>;
  private readonly heads: Collection<HeadDoc>;
  /** Each project's gallery tree is changed under a lease (mongo-lease.ts). */
  private readonly leases: MongoLeases;
  /** The last revision number this process wrote or saw per image (a hint: the insert decides). */
  private readonly lastSeen = new Map<string, number>();

  constructor(opts: { url: string; dbName?: string; prefix?: string }) {
    this.client = monitoredClient(opts.url, 'catalog');
    const m = /^mongodb(?:\+srv)?:\/\/[^/]*\/([^?]+)/.exec(opts.url);
    const db = this.client.db(opts.dbName ?? (m?.[1] ? decodeURIComponent(m[1]) : 'pir'));
    const prefix = opts.prefix ?? '';
    this.galleries = db.collection<GalleryDoc>(`${prefix}galleries`);
    this.names = db.collection<NameDoc>(`${prefix}gallery_names`);
    this.revs = db.collection<RevisionDoc>(`${prefix}image_revisions`);
    this.revisionInserts = new GroupWriter(this.revs, this.client);
    this.members = db.collection<MemberDoc>(`${prefix}gallery_members`);
    this.heads = db.collection<HeadDoc>(`${prefix}image_revision_heads`);
    this.leases = new MongoLeases(db.collection(`${prefix}gallery_leases`), db.collection(`${prefix}gallery_lease_heads`));
  }

  async start(): Promise<void> {
    await this.client.connect();
    await this.galleries.createIndex({ owner: 1 }).catch(() => undefined);
    await this.revs.createIndex({ image_id: 1, n: 1 }).catch(() => undefined);
    await this.members.createIndex({ member_id: 1 }).catch(() => undefined);
    await this.members.createIndex({ gallery_id: 1 }).catch(() => undefined);
  }

  exclusive<T>(owner: string, fn: () => Promise<T>): Promise<T> {
    return this.leases.run(owner, `project ${owner}'s galleries`, fn);
  }

  async createGallery(gallery: Gallery): Promise<void> {
    await this.claim(gallery);
    const { id, ...rest } = gallery;
    await this.galleries.insertOne({ _id: id, ...rest });
  }

  async getGallery(id: string): Promise<Gallery | null> {
    const doc = await this.galleries.findOne({ _id: id });
    return doc ? toGallery(doc) : null;
  }

  async galleriesOf(owner: string): Promise<Gallery[]> {
    return (await this.galleries.find({ owner }).sort({ name: 1, _id: 1 }).toArray()).map(toGallery);
  }

  async updateGallery(gallery: Gallery): Promise<boolean> {
    const old = await this.getGallery(gallery.id);
    if (!old) return false;
    const moved = nameKey(old) !== nameKey(gallery);
    if (moved) await this.claim(gallery);
    const { id, ...rest } = gallery;
    const { matchedCount } = await this.galleries.replaceOne({ _id: id }, rest);
    if (moved) await this.names.deleteOne({ _id: matchedCount === 1 ? nameKey(old) : nameKey(gallery) });
    return matchedCount === 1;
  }

  async deleteGallery(id: string): Promise<boolean> {
    const old = await this.getGallery(id);
    if (!old) return false;
    const { deletedCount } = await this.galleries.deleteOne({ _id: id });
    await this.names.deleteOne({ _id: nameKey(old) });
    await this.members.deleteMany({ gallery_id: id });
    return deletedCount === 1;
  }

  async putGalleryMember(member: GalleryMember): Promise<void> {
    const _id = memberId(member.gallery_id, member.member_id);
    await this.members.replaceOne({ _id }, { ...member }, { upsert: true });
  }

  async galleryMembers(galleryId: string): Promise<GalleryMember[]> {
    return (await this.members.find({ gallery_id: galleryId }).sort({ member_id: 1 }).toArray()).map(toMember);
  }

  async deleteGalleryMember(galleryId: string, member: string): Promise<boolean> {
    return (await this.members.deleteOne({ _id: memberId(galleryId, member) })).deletedCount === 1;
  }

  async galleryMembershipsOf(member: string): Promise<GalleryMember[]> {
    return (await this.members.find({ member_id: member }).sort({ gallery_id: 1 }).toArray()).map(toMember);
  }

  async appendRevision(revision: Omit<Revision, 'n'>): Promise<Revision> {
    let n = (this.lastSeen.get(revision.image_id) ?? (await this.newest(revision.image_id))) + 1;
    for (let attempt = 0; attempt < APPEND_RETRIES; attempt++, n++) {
      const full: Revision = { ...revision, n };
      try {
        await this.revisionInserts.write({ insertOne: { document: revisionDoc(full) } });
        this.lastSeen.set(revision.image_id, n);
        // Only a hint (a racing writer may leave a lower number): a failed write costs later reads a step or two.
        await this.heads.replaceOne({ _id: revision.image_id }, { n }, { upsert: true }).catch(() => undefined);
        return full;
      } catch (err) {
        if (!isDuplicate(err)) throw err;
        // Someone else wrote n: read the newest again rather than step one by one.
        if (attempt > 2) n = (await this.newest(revision.image_id));
      }
    }
    throw new Error(`could not number a revision of image ${revision.image_id} after ${APPEND_RETRIES} attempts`);
  }

  async appendFirstRevision(revision: Omit<Revision, 'n'>): Promise<Revision | null> {
    return this.appendRevisionAt(revision, 1);
  }

  /** Revisions are numbered without gaps, so the insert of n's unique _id is the compare-and-set. */
  async appendRevisionAt(revision: Omit<Revision, 'n'>, n: number): Promise<Revision | null> {
    const full: Revision = { ...revision, n };
    try {
      await this.revisionInserts.write({ insertOne: { document: revisionDoc(full) } });
    } catch (err) {
      if (isDuplicate(err)) return null;
      throw err;
    }
    this.lastSeen.set(revision.image_id, n);
    if (n > 1) await this.heads.replaceOne({ _id: revision.image_id }, { n }, { upsert: true }).catch(() => undefined); // a hint
    return full;
  }

  /**
   * By `_id` too: the kept revisions are the numbers oldest..newest, so the page starts at the
   * smallest kept number past `after` (a binary search of `_id` lookups when the history was
   * pruned past it) and its documents are read one lookup each, ID_BATCH at a time.
   */
  async revisions(imageId: string, after: number, limit: number): Promise<Revision[]> {
    const count = Math.max(0, Math.floor(limit));
    const newest = await this.newest(imageId);
    let from = Math.max(1, Math.floor(after) + 1);
    if (count === 0 || from > newest) return [];
    if (!(await this.exists(imageId, from))) {
      let lo = from + 1; // the first kept number is in lo..newest (newest is never pruned)
      let hi = newest;
      while (lo < hi) {
        const mid = Math.floor((lo + hi) / 2);
        if (await this.exists(imageId, mid)) hi = mid;
        else lo = mid + 1;
      }
      from = lo;
    }
    const page: Revision[] = [];
    const end = Math.min(newest, from + count - 1);
    for (let first = from; first <= end; first += ID_BATCH) {
      const numbers = Array.from({ length: Math.min(ID_BATCH, end - first + 1) }, (_, i) => first + i);
      const docs = await Promise.all(numbers.map((n) => this.revs.findOne({ _id: revisionId(imageId, n) })));
      for (const doc of docs) if (doc) page.push(toRevision(doc)); // none: pruned meanwhile
    }
    return page;
  }

  async getRevision(imageId: string, n: number): Promise<Revision | null> {
    const doc = await this.revs.findOne({ _id: revisionId(imageId, n) });
    return doc ? toRevision(doc) : null;
  }

  async latestRevision(imageId: string): Promise<Revision | null> {
    const n = await this.newest(imageId);
    if (n === 0) return null;
    const doc = await this.revs.findOne({ _id: revisionId(imageId, n) });
    return doc ? toRevision(doc) : null;
  }

  async pruneRevisions(imageId: string, keep: number): Promise<void> {
    const newest = await this.newest(imageId);
    await this.deleteDownFrom(imageId, newest - Math.max(1, Math.floor(keep)));
  }

  async dropRevisions(imageId: string): Promise<void> {
    await this.deleteDownFrom(imageId, await this.newest(imageId));
    await this.heads.deleteOne({ _id: imageId });
    this.lastSeen.delete(imageId);
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  /** The newest revision's number (0: none): from the hint, stepping forward while the next exists. */
  private async newest(imageId: string): Promise<number> {
    const seen = this.lastSeen.get(imageId);
    let n = seen ?? (await this.heads.findOne({ _id: imageId }))?.n ?? 1;
    if (seen === undefined && !(await this.exists(imageId, n))) {
      // No history; or one from before heads existed, pruned since; or a head left below the
      // revisions pruned since by failed head writes: the one query that scans.
      const [doc] = await this.revs.find({ image_id: imageId }).sort({ n: -1 }).limit(1).toArray();
      n = doc?.n ?? 0;
    }
    while (await this.exists(imageId, n + 1)) n++;
    if (n > 0) this.lastSeen.set(imageId, n);
    return n;
  }

  private async exists(imageId: string, n: number): Promise<boolean> {
    return (await this.revs.findOne({ _id: revisionId(imageId, n) }, { projection: { _id: 1 } })) !== null;
  }

  /**
   * Deletes revisions `upTo`, `upTo` - 1, … by _id, a batch at a time, down to the oldest: a batch
   * that finds fewer than it asked for reached the bottom (the numbers have no gaps).
   */
  private async deleteDownFrom(imageId: string, upTo: number): Promise<void> {
    for (let top = upTo; top >= 1; top -= ID_BATCH) {
      const ids = Array.from({ length: Math.min(ID_BATCH, top) }, (_, i) => revisionId(imageId, top - i));
      if ((await deleteByIds(this.revs, ids)) < ids.length) return;
    }
  }

  private async claim(gallery: Gallery): Promise<void> {
    try {
      await this.names.insertOne({ _id: nameKey(gallery), gallery_id: gallery.id });
    } catch (err) {
      if (isDuplicate(err)) throw new GalleryNameTakenError(gallery.name);
      throw err;
    }
  }
}
