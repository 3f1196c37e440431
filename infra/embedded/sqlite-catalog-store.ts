/**
 * CatalogStore on SQLite (embedded mode): galleries and image revisions, one JSON document per
 * row plus the columns queries need. Sibling gallery names are unique by a UNIQUE constraint;
 * revision numbers come from a per-image counter written in the same transaction as the
 * revision, so they keep growing after old revisions are pruned. Writes resolve once on disk,
 * by group commit (wal-group-commit.ts).
 */
import { KeyedMutex } from '../../core/keyed-mutex.js';
import Database from 'better-sqlite3';
import { GalleryNameTakenError, type CatalogStore, type Gallery, type GalleryMember, type Revision } from '../../core/catalog-ports.js';
import { WalGroupCommit } from './wal-group-commit.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS galleries (
  id         TEXT PRIMARY KEY,
  owner      TEXT NOT NULL,
  parent_key TEXT NOT NULL,
  name       TEXT NOT NULL,
  doc        TEXT NOT NULL,
  UNIQUE (owner, parent_key, name)
);
CREATE TABLE IF NOT EXISTS gallery_members (
  gallery_id TEXT NOT NULL,
  member_id  TEXT NOT NULL,
  doc        TEXT NOT NULL,
  PRIMARY KEY (gallery_id, member_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS gallery_members_by_member ON gallery_members (member_id);
CREATE TABLE IF NOT EXISTS revisions (
  image_id TEXT    NOT NULL,
  n        INTEGER NOT NULL,
  doc      TEXT    NOT NULL,
  PRIMARY KEY (image_id, n)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS revision_heads (
  image_id TEXT PRIMARY KEY,
  last     INTEGER NOT NULL
) WITHOUT ROWID;
`;

function isUniqueViolation(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

export class SqliteCatalogStore implements CatalogStore {
  private readonly db: Database.Database;
  private readonly commits: WalGroupCommit;
  private readonly owners = new KeyedMutex();
  private readonly appendTx: (revision: Omit<Revision, 'n'>) => Revision;
  private readonly appendAtTx: (revision: Omit<Revision, 'n'>, n: number) => Revision | null;
  private readonly appendFirstTx: (revision: Omit<Revision, 'n'>) => Revision | null;

  constructor(opts: { path: string }) {
    this.db = new Database(opts.path);
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.exec(SCHEMA);
    const head = this.db.prepare<[string], { last: number }>('SELECT last FROM revision_heads WHERE image_id = ?');
    const setHead = this.db.prepare('INSERT INTO revision_heads (image_id, last) VALUES (?, ?) ON CONFLICT (image_id) DO UPDATE SET last = excluded.last');
    const insert = this.db.prepare('INSERT INTO revisions (image_id, n, doc) VALUES (?, ?, ?)');
    const append = this.db.transaction((revision: Omit<Revision, 'n'>): Revision => {
      const n = (head.get(revision.image_id)?.last ?? 0) + 1;
      const full: Revision = { ...revision, n };
      insert.run(revision.image_id, n, JSON.stringify(full));
      setHead.run(revision.image_id, n);
      return full;
    });
    this.appendTx = (revision) => append.immediate(revision);
    const appendAt = this.db.transaction((revision: Omit<Revision, 'n'>, n: number): Revision | null => ((head.get(revision.image_id)?.last ?? 0) + 1 === n ? append(revision) : null));
    this.appendAtTx = (revision, n) => appendAt.immediate(revision, n);
    const appendFirst = this.db.transaction((revision: Omit<Revision, 'n'>): Revision | null => (head.get(revision.image_id) ? null : append(revision)));
    this.appendFirstTx = (revision) => appendFirst.immediate(revision);
    this.commits = new WalGroupCommit(this.db, opts.path);
  }

  /** One process owns the embedded data directory (its lock): exclusion within it is enough. */
  exclusive<T>(owner: string, fn: () => Promise<T>): Promise<T> {
    return this.owners.run(owner, fn);
  }

  /** `value` once the write that produced it is on disk. */
  private async durable<T>(value: T): Promise<T> {
    await this.commits.durable();
    return value;
  }

  async createGallery(gallery: Gallery): Promise<void> {
    try {
      this.db.prepare('INSERT INTO galleries (id, owner, parent_key, name, doc) VALUES (?, ?, ?, ?, ?)')
        .run(gallery.id, gallery.owner, gallery.parent_id ?? '', gallery.name, JSON.stringify(gallery));
    } catch (err) {
      if (isUniqueViolation(err)) throw new GalleryNameTakenError(gallery.name);
      throw err;
    }
    await this.commits.durable();
  }

  async getGallery(id: string): Promise<Gallery | null> {
    const row = this.db.prepare<[string], { doc: string }>('SELECT doc FROM galleries WHERE id = ?').get(id);
    return row ? (JSON.parse(row.doc) as Gallery) : null;
  }

  async galleriesOf(owner: string): Promise<Gallery[]> {
    return this.db.prepare<[string], { doc: string }>('SELECT doc FROM galleries WHERE owner = ? ORDER BY name, id').all(owner).map((r) => JSON.parse(r.doc) as Gallery);
  }

  async updateGallery(gallery: Gallery): Promise<boolean> {
    let changed: boolean;
    try {
      changed = this.db.prepare('UPDATE galleries SET parent_key = ?, name = ?, doc = ? WHERE id = ?')
        .run(gallery.parent_id ?? '', gallery.name, JSON.stringify(gallery), gallery.id).changes === 1;
    } catch (err) {
      if (isUniqueViolation(err)) throw new GalleryNameTakenError(gallery.name);
      throw err;
    }
    return this.durable(changed);
  }

  async deleteGallery(id: string): Promise<boolean> {
    return this.durable(this.db.transaction(() => {
      this.db.prepare('DELETE FROM gallery_members WHERE gallery_id = ?').run(id);
      return this.db.prepare('DELETE FROM galleries WHERE id = ?').run(id).changes === 1;
    }).immediate());
  }

  async putGalleryMember(member: GalleryMember): Promise<void> {
    this.db.prepare('INSERT INTO gallery_members (gallery_id, member_id, doc) VALUES (?, ?, ?) ON CONFLICT (gallery_id, member_id) DO UPDATE SET doc = excluded.doc')
      .run(member.gallery_id, member.member_id, JSON.stringify(member));
    await this.commits.durable();
  }

  async galleryMembers(galleryId: string): Promise<GalleryMember[]> {
    return this.db.prepare<[string], { doc: string }>('SELECT doc FROM gallery_members WHERE gallery_id = ? ORDER BY member_id').all(galleryId).map((r) => JSON.parse(r.doc) as GalleryMember);
  }

  async deleteGalleryMember(galleryId: string, memberId: string): Promise<boolean> {
    return this.durable(this.db.prepare('DELETE FROM gallery_members WHERE gallery_id = ? AND member_id = ?').run(galleryId, memberId).changes === 1);
  }

  async galleryMembershipsOf(memberId: string): Promise<GalleryMember[]> {
    return this.db.prepare<[string], { doc: string }>('SELECT doc FROM gallery_members WHERE member_id = ? ORDER BY gallery_id').all(memberId).map((r) => JSON.parse(r.doc) as GalleryMember);
  }

  async appendRevision(revision: Omit<Revision, 'n'>): Promise<Revision> {
    return this.durable(this.appendTx(revision));
  }

  async appendRevisionAt(revision: Omit<Revision, 'n'>, n: number): Promise<Revision | null> {
    return this.durable(this.appendAtTx(revision, n));
  }

  async appendFirstRevision(revision: Omit<Revision, 'n'>): Promise<Revision | null> {
    return this.durable(this.appendFirstTx(revision));
  }

  async revisions(imageId: string, after: number, limit: number): Promise<Revision[]> {
    return this.db.prepare<[string, number, number], { doc: string }>('SELECT doc FROM revisions WHERE image_id = ? AND n > ? ORDER BY n LIMIT ?')
      .all(imageId, after, Math.max(0, Math.floor(limit))).map((r) => JSON.parse(r.doc) as Revision);
  }

  async getRevision(imageId: string, n: number): Promise<Revision | null> {
    const row = this.db.prepare<[string, number], { doc: string }>('SELECT doc FROM revisions WHERE image_id = ? AND n = ?').get(imageId, n);
    return row ? (JSON.parse(row.doc) as Revision) : null;
  }

  async latestRevision(imageId: string): Promise<Revision | null> {
    const row = this.db.prepare<[string], { doc: string }>('SELECT doc FROM revisions WHERE image_id = ? ORDER BY n DESC LIMIT 1').get(imageId);
    return row ? (JSON.parse(row.doc) as Revision) : null;
  }

  async pruneRevisions(imageId: string, keep: number): Promise<void> {
    this.db.prepare('DELETE FROM revisions WHERE image_id = ? AND n <= (SELECT last FROM revision_heads WHERE image_id = ?) - ?').run(imageId, imageId, Math.max(1, Math.floor(keep)));
    await this.commits.durable();
  }

  async dropRevisions(imageId: string): Promise<void> {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM revisions WHERE image_id = ?').run(imageId);
      this.db.prepare('DELETE FROM revision_heads WHERE image_id = ?').run(imageId);
    }).immediate();
    await this.commits.durable();
  }

  async close(): Promise<void> {
    await this.commits.close();
    if (this.db.open) this.db.close();
  }
}
