/** The CatalogStore contract (galleries and revisions): every adapter passes the same suite. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { GalleryNameTakenError, type CatalogStore, type Gallery, type Revision } from '../../core/catalog-ports.js';
import { requireServices, type ServiceName } from '../support/services.js';

export type MakeCatalogStore = () => CatalogStore | Promise<CatalogStore>;

function gallery(owner: string, name: string, parent_id: string | null = null): Gallery {
  const now = new Date().toISOString();
  return { id: randomUUID(), owner, name, parent_id, created_at: now, updated_at: now };
}

function revision(imageId: string, action = 'update'): Omit<Revision, 'n'> {
  return { image_id: imageId, at: new Date().toISOString(), project_id: 'p1', user_id: 'u1', action, patch: [{ op: 'replace', path: '/name', value: action }], metadata: { name: action } };
}

export function catalogStoreContract(name: string, makeStore: MakeCatalogStore, opts: { services?: ServiceName[]; teardown?: () => Promise<void> } = {}): void {
  test(`CatalogStore contract: ${name}`, { timeout: 120_000 }, async (t) => {
    if (!(await requireServices(t, opts.services ?? []))) return;
    const opened: CatalogStore[] = [];
    const fresh = async () => {
      const store = await makeStore();
      opened.push(store);
      return store;
    };
    t.after(async () => {
      for (const s of opened) await s.close();
      await opts.teardown?.();
    });

    await t.test('galleries: create, get, list by owner; sibling names are unique per parent and owner', async () => {
      const store = await fresh();
      const linux = gallery('p1', 'linux');
      await store.createGallery(linux);
      const debian = gallery('p1', 'debian', linux.id);
      await store.createGallery(debian);
      await store.createGallery(gallery('p2', 'linux')); // another project may use the name
      await store.createGallery(gallery('p1', 'debian')); // so may another parent
      await assert.rejects(store.createGallery(gallery('p1', 'linux')), GalleryNameTakenError);
      await assert.rejects(store.createGallery(gallery('p1', 'debian', linux.id)), GalleryNameTakenError);
      assert.deepEqual(await store.getGallery(debian.id), debian);
      assert.equal(await store.getGallery('missing'), null);
      assert.deepEqual((await store.galleriesOf('p1')).map((g) => g.name).sort(), ['debian', 'debian', 'linux']);
      assert.deepEqual(await store.galleriesOf('nobody'), []);
    });

    await t.test('galleries: rename and move keep names unique, free the old name, and delete', async () => {
      const store = await fresh();
      const a = gallery('p1', 'a');
      const b = gallery('p1', 'b');
      await store.createGallery(a);
      await store.createGallery(b);
      await assert.rejects(store.updateGallery({ ...b, name: 'a' }), GalleryNameTakenError);
      assert.equal((await store.getGallery(b.id))?.name, 'b', 'a refused rename changes nothing');
      assert.equal(await store.updateGallery({ ...b, name: 'c' }), true);
      await store.createGallery(gallery('p1', 'b')); // the old name is free again
      assert.equal(await store.updateGallery({ ...a, parent_id: b.id }), true);
      assert.equal((await store.getGallery(a.id))?.parent_id, b.id);
      await store.createGallery(gallery('p1', 'a')); // free at the root now
      assert.equal(await store.updateGallery({ ...gallery('p1', 'x'), id: 'missing' }), false);
      assert.equal(await store.deleteGallery(a.id), true);
      assert.equal(await store.deleteGallery(a.id), false);
      assert.equal(await store.getGallery(a.id), null);
      await store.createGallery(gallery('p1', 'a', b.id)); // its name is free under b
    });

    await t.test('revisions: appendRevisionAt takes number n unless it is taken; of concurrent ones exactly one wins', async () => {
      const store = await fresh();
      assert.equal((await store.appendRevisionAt(revision('at-1', 'create'), 1))?.n, 1);
      assert.equal(await store.appendRevisionAt(revision('at-1'), 1), null, 'taken');
      assert.equal((await store.appendRevisionAt(revision('at-1'), 2))?.n, 2);
      const racing = await Promise.all(Array.from({ length: 6 }, () => store.appendRevisionAt(revision('at-1'), 3)));
      assert.equal(racing.filter((r) => r !== null).length, 1);
      assert.equal((await store.latestRevision('at-1'))?.n, 3);
    });

    await t.test('revisions: numbered 1, 2, 3 per image, paged, and concurrent appends each get their own number', async () => {
      const store = await fresh();
      const first = await store.appendRevision(revision('img-1', 'create'));
      assert.equal(first.n, 1);
      assert.equal((await store.appendRevision(revision('img-1'))).n, 2);
      assert.equal((await store.appendRevision(revision('img-2', 'create'))).n, 1);
      const many = await Promise.all(Array.from({ length: 8 }, () => store.appendRevision(revision('img-1'))));
      assert.deepEqual(many.map((r) => r.n).sort((x, y) => x - y), [3, 4, 5, 6, 7, 8, 9, 10]);
      const all = await store.revisions('img-1', 0, 100);
      assert.deepEqual(all.map((r) => r.n), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      assert.deepEqual(all[0], first);
      assert.deepEqual((await store.revisions('img-1', 4, 3)).map((r) => r.n), [5, 6, 7]);
      assert.deepEqual(await store.revisions('img-1', 10, 5), []);
      assert.deepEqual(await store.revisions('img-1', 0, 0), []);
      assert.deepEqual(await store.getRevision('img-1', 2), { ...revision('img-1'), n: 2, at: (await store.getRevision('img-1', 2))!.at });
      assert.equal(await store.getRevision('img-1', 11), null);
    });

    await t.test("revisions: the metadata and patch keep the users' keys as given ('.' and '$' in property names)", async () => {
      const store = await fresh();
      const properties = { 'org.openstack__1__os_distro': 'debian', $where: 'x', 'a.b': 'y' };
      const first = { ...revision('img-odd', 'create'), patch: [{ op: 'add' as const, path: '/properties', value: properties }], metadata: { name: 'odd', properties } };
      assert.deepEqual(await store.appendFirstRevision(first), { ...first, n: 1 });
      const second = { ...revision('img-odd'), patch: [{ op: 'add' as const, path: '/properties/c.d', value: 'z' }], metadata: { name: 'odd', properties: { ...properties, 'c.d': 'z' } } };
      assert.deepEqual(await store.appendRevision(second), { ...second, n: 2 });
      assert.deepEqual(await store.revisions('img-odd', 0, 10), [{ ...first, n: 1 }, { ...second, n: 2 }]);
      assert.deepEqual(await store.getRevision('img-odd', 1), { ...first, n: 1 });
      assert.deepEqual(await store.latestRevision('img-odd'), { ...second, n: 2 });
    });

    await t.test('revisions: a new image\'s first revision is n = 1 once; a second first append (a repair came first) is refused', async () => {
      const store = await fresh();
      const first = await store.appendFirstRevision(revision('img-new', 'create'));
      assert.equal(first?.n, 1);
      assert.equal(await store.appendFirstRevision(revision('img-new', 'create')), null);
      assert.deepEqual((await store.revisions('img-new', 0, 10)).map((r) => r.action), ['create']);
      assert.equal((await store.appendRevision(revision('img-new'))).n, 2);
      const racing = await Promise.all(Array.from({ length: 4 }, () => store.appendFirstRevision(revision('img-race', 'create'))));
      assert.equal(racing.filter((r) => r !== null).length, 1);
    });

    await t.test('revisions: pruning keeps the newest and numbering goes on; drop removes all', async () => {
      const store = await fresh();
      for (let i = 0; i < 6; i++) await store.appendRevision(revision('img'));
      await store.pruneRevisions('img', 2);
      assert.deepEqual((await store.revisions('img', 0, 100)).map((r) => r.n), [5, 6]);
      assert.equal(await store.getRevision('img', 1), null);
      assert.equal((await store.appendRevision(revision('img'))).n, 7);
      assert.equal((await store.latestRevision('img'))?.n, 7);
      await store.dropRevisions('img');
      assert.deepEqual(await store.revisions('img', 0, 100), []);
      assert.equal(await store.latestRevision('img'), null);
    });

    await t.test('gallery members: put (insert or replace), list by gallery and by member, delete; deleting the gallery drops them', async () => {
      const store = await fresh();
      const shared = gallery('p1', 'shared');
      const other = gallery('p1', 'other');
      await store.createGallery(shared);
      await store.createGallery(other);
      const m = (g: string, member: string, status: 'pending' | 'accepted' | 'rejected') => ({ gallery_id: g, member_id: member, status, created_at: 't', updated_at: 't' });
      await store.putGalleryMember(m(shared.id, 'p2', 'pending'));
      await store.putGalleryMember(m(shared.id, 'p3', 'pending'));
      await store.putGalleryMember(m(other.id, 'p2', 'accepted'));
      await store.putGalleryMember(m(shared.id, 'p2', 'accepted')); // replaces
      assert.deepEqual((await store.galleryMembers(shared.id)).map((x) => `${x.member_id}:${x.status}`), ['p2:accepted', 'p3:pending']);
      assert.deepEqual((await store.galleryMembershipsOf('p2')).map((x) => x.gallery_id).sort(), [shared.id, other.id].sort());
      assert.deepEqual(await store.galleryMembershipsOf('nobody'), []);
      assert.equal(await store.deleteGalleryMember(shared.id, 'p3'), true);
      assert.equal(await store.deleteGalleryMember(shared.id, 'p3'), false);
      assert.equal(await store.deleteGallery(shared.id), true);
      assert.deepEqual(await store.galleryMembers(shared.id), []);
      assert.deepEqual((await store.galleryMembershipsOf('p2')).map((x) => x.gallery_id), [other.id]);
    });
  });
}
