import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Caller } from '../../../core/caller.js';
import { allowed, canSee, enforce, hasRole, requireVisible, RULES, setDeactivatePolicy } from '../../../core/policy.js';
import type { ImageDoc, ImageMember } from '../../../schemas/image.js';

const caller = (project: string, ...roles: string[]): Caller => ({ project_id: project, user_id: 'u', roles });
const member = (id: string, status: ImageMember['status']): ImageMember => ({ member_id: id, status, created_at: '', updated_at: '' });
const image = (owner: string | null, visibility: ImageDoc['visibility'], members: ImageMember[] = []) => ({ owner, visibility, members, status: 'active' }) as unknown as ImageDoc;

describe('policy', () => {
  it('implies roles as Keystone does: admin ⊃ member ⊃ reader, whatever the case', () => {
    assert.ok(hasRole(caller('p', 'admin'), 'reader'));
    assert.ok(hasRole(caller('p', 'Member'), 'reader'));
    assert.ok(!hasRole(caller('p', 'reader'), 'member'));
    assert.ok(!hasRole(caller('p', 'observer'), 'reader'));
    assert.ok(!hasRole(caller('p'), 'reader'));
  });

  // What a list shows by default is the query layer's (core/list-access.ts), tested with the stores.
  it("lets the owner project's members deactivate and reactivate with PIR_DEACTIVATE_POLICY=owner, and no one else", () => {
    const target = { owner: 'A' };
    try {
      setDeactivatePolicy('owner');
      for (const action of ['deactivate', 'reactivate'] as const) {
        assert.ok(allowed(caller('A', 'member'), action, target), action);
        assert.ok(allowed(caller('Z', 'admin'), action, target), action);
        assert.ok(!allowed(caller('A', 'reader'), action, target), action);
        assert.ok(!allowed(caller('B', 'member'), action, target), action);
      }
      assert.throws(() => enforce(caller('B', 'member'), 'deactivate', target), /owner project or an administrator can deactivate/);
    } finally {
      setDeactivatePolicy('admin');
    }
    assert.ok(!allowed(caller('A', 'member'), 'deactivate', target));
    assert.throws(() => enforce(caller('A', 'member'), 'reactivate', target), /Only an administrator can reactivate/);
  });

  it("sees as Glance's is_image_visible", () => {
    const b = caller('B', 'member');
    const cases: [ImageDoc, boolean][] = [
      [image('A', 'private'), false],
      [image('A', 'shared'), false],
      [image('A', 'shared', [member('B', 'pending')]), true],
      [image('A', 'shared', [member('B', 'rejected')]), true],
      [image('A', 'shared', [member('B', 'accepted')]), true],
      [image('A', 'private', [member('B', 'accepted')]), false], // members count only while shared
      [image('A', 'community'), true],
      [image('A', 'public'), true],
      [image(null, 'private'), true],
      [image('B', 'private'), true],
    ];
    for (const [doc, sees] of cases) assert.equal(canSee(b, doc), sees, JSON.stringify(doc));
    assert.ok(canSee(caller('X', 'admin'), image('A', 'private')));
  });

  it('sees an image in a gallery shared with the project, whatever its own visibility (README "Gallery sharing")', () => {
    const b = caller('B', 'reader');
    const inGallery = (g: string, visibility: ImageDoc['visibility']) => ({ ...image('A', visibility), properties: { pir_gallery_id: g } }) as unknown as ImageDoc;
    const via = new Set(['g1', 'g1-child']);
    assert.ok(canSee(b, inGallery('g1', 'private'), via));
    assert.ok(canSee(b, inGallery('g1-child', 'shared'), via));
    assert.ok(!canSee(b, inGallery('g2', 'private'), via), 'another gallery');
    assert.ok(!canSee(b, inGallery('g1', 'private')), 'no grants');
    assert.ok(!canSee(b, inGallery('g1', 'private'), new Set()));
    assert.ok(!canSee(b, { ...image('A', 'private'), properties: {} } as unknown as ImageDoc, via), 'in no gallery');
  });

  it('keeps writes to the owner project, publicize and deactivate to admins', () => {
    const target = { owner: 'A' };
    for (const action of ['modify_image', 'delete_image', 'upload_image', 'add_member', 'delete_member', 'communitize_image'] as const) {
      assert.ok(allowed(caller('A', 'member'), action, target), action);
      assert.ok(!allowed(caller('A', 'reader'), action, target), action);
      assert.ok(!allowed(caller('B', 'member'), action, target), action);
      assert.ok(allowed(caller('B', 'admin'), action, target), action);
    }
    for (const action of ['publicize_image', 'deactivate', 'reactivate', 'tasks_api_access', 'copy_image', 'delete_image_location', 'stores_info_detail', 'fetch_image_location'] as const) {
      assert.ok(!allowed(caller('A', 'member'), action, target), action);
      assert.ok(allowed(caller('Z', 'admin'), action, target), action);
    }
    assert.ok(allowed(caller('B', 'member'), 'modify_member', { owner: 'A', member_id: 'B' }));
    assert.ok(!allowed(caller('A', 'member'), 'modify_member', { owner: 'A', member_id: 'B' }));
    assert.ok(!allowed(caller('B', 'reader'), 'modify_member', { owner: 'A', member_id: 'B' }));
    assert.ok(!allowed(caller('B', 'reader'), 'download_image', target));
    assert.ok(allowed(caller('B', 'member'), 'download_image', target));
    assert.ok(allowed(caller('A', 'reader'), 'get_image_tasks', target));
    assert.ok(!allowed(caller('B', 'member'), 'get_image_tasks', target));
    assert.ok(allowed(caller('B', 'admin'), 'get_image_tasks', target));
    // An image's revisions: the owner project (any role) and administrators.
    assert.ok(allowed(caller('A', 'reader'), 'get_image_revisions', target));
    assert.ok(!allowed(caller('B', 'member'), 'get_image_revisions', target));
    assert.ok(allowed(caller('B', 'admin'), 'get_image_revisions', target));
    assert.equal(Object.keys(RULES).length, 24);
  });

  it('lets a service user (service role alone) use the locations API and see the stores\' details, as Glance\'s defaults', () => {
    const service = caller('S', 'service');
    for (const action of ['add_image_location', 'fetch_image_location', 'stores_info_detail'] as const) assert.ok(allowed(service, action, { owner: 'A' }), action);
    for (const action of ['get_image', 'get_images', 'modify_image', 'download_image', 'copy_image', 'delete_image_location'] as const) assert.ok(!allowed(service, action, { owner: 'A' }), action);
    assert.ok(allowed(caller('A', 'member'), 'add_image_location', { owner: 'A' }), 'the owner project\'s members add locations');
    assert.ok(!allowed(caller('B', 'member'), 'add_image_location', { owner: 'A' }));
    assert.ok(!allowed(caller('A', 'reader'), 'add_image_location', { owner: 'A' }));
    assert.throws(() => enforce(service, 'get_images', { owner: 'S' }), /do not allow get_images; it needs the reader role/);
    assert.throws(() => enforce(caller('A', 'reader'), 'modify_image', { owner: 'A' }), /it needs the member role/);
  });

  it('hides an image from a caller who may not read it (no reader role): 404, unless the rule asked lets it anyway (Glance\'s ImageAPIPolicy)', () => {
    const doc = { ...image('A', 'public'), id: 'i1' } as ImageDoc;
    const notFound = (fn: () => unknown) => assert.throws(fn, (e: unknown) => (e as { kind?: string }).kind === 'not_found');
    notFound(() => requireVisible(caller('B', 'service'), doc, 'i1'));
    notFound(() => requireVisible(caller('A', 'observer'), doc, 'i1'));
    notFound(() => requireVisible(caller('A', 'observer'), doc, 'i1', undefined, 'fetch_image_location'));
    assert.equal(requireVisible(caller('B', 'reader'), doc, 'i1'), doc);
    assert.equal(requireVisible(caller('B', 'service'), doc, 'i1', undefined, 'fetch_image_location'), doc);
    assert.equal(requireVisible(caller('A', 'service'), doc, 'i1', undefined, 'add_image_location'), doc);
    notFound(() => requireVisible(caller('B', 'service'), { ...doc, visibility: 'private' } as ImageDoc, 'i1', undefined, 'fetch_image_location'));
  });
});
