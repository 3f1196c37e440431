/**
 * core/event-audience.ts: who is told of an image event through gallery sharing (the webhooks'
 * rule with the project's gallery grants), and that grants are read only when they can matter
 * (the image is in a gallery and nothing else shows it to the project), once per project per event.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Caller } from '../../../core/caller.js';
import { EventAudience } from '../../../core/event-audience.js';
import type { GalleryGrant } from '../../../core/ports.js';
import type { ImageDoc, Visibility } from '../../../schemas/image.js';
import { makeDoc } from '../../contract/helpers.js';

const caller = (project: string, roles = ['member']): Caller => ({ project_id: project, user_id: `${project}-u`, roles });
const image = (visibility: Visibility, gallery?: string): ImageDoc => makeDoc({ owner: 'A', visibility, properties: gallery ? { pir_gallery_id: gallery } : {} });

function grantsTable(table: Record<string, GalleryGrant[]>) {
  const calls: string[] = [];
  return { calls, grantsOf: async (project: string) => { calls.push(project); return table[project] ?? []; } };
}

describe('EventAudience: events follow gallery sharing', () => {
  const table = {
    B: [{ gallery_id: 'g1', status: 'accepted' as const }],
    P: [{ gallery_id: 'g1', status: 'pending' as const }],
    R: [{ gallery_id: 'g1', status: 'rejected' as const }],
  };

  it('an accepted gallery member is told of a private or shared image in the gallery; pending, rejected and strangers are not', async () => {
    for (const visibility of ['private', 'shared'] as const) {
      const { grantsOf } = grantsTable(table);
      const audience = new EventAudience(image(visibility, 'g1'), grantsOf);
      assert.equal(await audience.canSee(caller('B')), true, `B on a ${visibility} image`);
      for (const p of ['P', 'R', 'C']) assert.equal(await audience.canSee(caller(p)), false, `${p} on a ${visibility} image`);
      assert.equal(await audience.canSee(caller('A', ['reader'])), true, 'the owner');
      assert.equal(await audience.canSee(caller('X', ['admin'])), true, 'an admin');
    }
  });

  it('a grant for another gallery, or an image outside any gallery, tells nothing', async () => {
    const { grantsOf } = grantsTable(table);
    assert.equal(await new EventAudience(image('private', 'g2'), grantsOf).canSee(caller('B')), false);
    assert.equal(await new EventAudience(image('private'), grantsOf).canSee(caller('B')), false);
    assert.equal(await new EventAudience(null, grantsOf).canSee(caller('B')), false, 'a purged image');
  });

  it('reads grants only when they can matter, once per project per event', async () => {
    const { calls, grantsOf } = grantsTable(table);
    await new EventAudience(image('private'), grantsOf).canSee(caller('B'));
    await new EventAudience(image('public', 'g1'), grantsOf).canSee(caller('B'));
    await new EventAudience(image('private', 'g1'), grantsOf).canSee(caller('A'));
    assert.deepEqual(calls, [], 'outside a gallery, public, or the owner: no lookup');
    const audience = new EventAudience(image('private', 'g1'), grantsOf);
    await audience.canSee(caller('B'));
    await audience.canSee(caller('B', ['reader']));
    await audience.canSee(caller('C'));
    assert.deepEqual(calls, ['B', 'C']);
  });

  it('without a grants source, galleries grant nothing (as before gallery sharing)', async () => {
    assert.equal(await new EventAudience(image('private', 'g1')).canSee(caller('B')), false);
  });
});
