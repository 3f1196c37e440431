import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Caller } from '../../../core/caller.js';
import { allowed, canSee, hasRole, RULES } from '../../../core/policy.js';
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
    for (const action of ['publicize_image', 'deactivate', 'reactivate', 'tasks_api_access', 'copy_image', 'delete_image_location', 'stores_info_detail'] as const) {
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
    assert.equal(Object.keys(RULES).length, 22);
  });
});
