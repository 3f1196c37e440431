/**
 * Webhooks and GET /v2/events follow gallery sharing (README "Gallery sharing"): a private image
 * of project A in a gallery below one shared with B reaches B's subscription and B's event
 * stream once B has accepted, and no longer when B is removed, the gallery is made private or
 * the image leaves the gallery; project C, never a member, learns of nothing. Real HTTP for the
 * stream, the real fan-out (wired with the catalog's grants as infra/catalog.ts wires it).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { testApp, type TestApp, type Token } from './tenant-app.js';
import { openEventStream, type EventStreamReader } from '../../support/event-stream.js';

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('webhooks and /v2/events follow gallery sharing', () => {
  let t: TestApp;
  let url = '';
  before(async () => {
    t = await testApp();
    url = await t.app.listen({ host: '127.0.0.1', port: 0 });
  });
  after(async () => { await t.close(); });

  it('an image in a shared gallery is delivered and streamed to an accepted member only, and stops when sharing ends', async () => {
    const top = (await t.call('a-member', 'POST', '/v2/galleries', { name: 'shared-top' })).json().id as string;
    const below = (await t.call('a-member', 'POST', '/v2/galleries', { name: 'below', parent_id: top })).json().id as string;
    const id = await t.create('a-member', { visibility: 'private', name: 'gallery event image' });
    assert.equal((await t.patch('a-member', id, [{ op: 'add', path: '/pir_gallery_id', value: below }])).statusCode, 200);
    // An image outside any gallery, to show a sharing of the gallery says nothing about it.
    const outside = await t.create('a-member', { visibility: 'private', name: 'outside' });

    const subs: Partial<Record<Token, string>> = {};
    for (const token of ['a-member', 'b-member', 'c-member'] as Token[]) {
      const res = await t.call(token, 'POST', '/v2/webhooks', { url: 'https://hooks.example.com/pir', events: ['image.updated'], filters: { image_ids: [id, outside] } });
      assert.equal(res.statusCode, 201, res.body);
      subs[token] = res.json().id as string;
    }
    const streams: Partial<Record<Token, EventStreamReader>> = {};
    for (const token of ['a-member', 'b-member', 'c-member'] as Token[]) {
      streams[token] = await openEventStream(url, token);
      await streams[token]!.hello;
    }
    try {
      /** Tags the image (image.updated) and reports which projects' subscriptions and streams got that event. */
      const told = async (image: string, step: string): Promise<Record<string, [boolean, boolean]>> => {
        const tag = `${step}-${Math.random().toString(36).slice(2, 8)}`;
        assert.equal((await t.call('a-member', 'PUT', `/v2/images/${image}/tags/${tag}`)).statusCode, 204);
        const carries = (payload: { data?: { id?: string; tags?: string[] } }) => payload.data?.id === image && (payload.data.tags ?? []).includes(tag);
        // The owner always hears of it: once A has, the others have had their chance too.
        await streams['a-member']!.waitFor((m) => m.event === 'image.updated' && carries(m.data), 10_000, `${step}: A's stream`);
        const end = Date.now() + 5000;
        const delivered = async (token: Token) => (await t.webhookStore.listDeliveries(subs[token]!, 100)).some((d) => carries(JSON.parse(d.payload)));
        while (!(await delivered('a-member')) && Date.now() < end) await wait(20);
        await wait(150);
        const out: Record<string, [boolean, boolean]> = {};
        for (const token of ['a-member', 'b-member', 'c-member'] as Token[]) {
          out[token] = [await delivered(token), streams[token]!.messages.some((m) => m.event === 'image.updated' && carries(m.data))];
        }
        return out;
      };
      const expect = (b: boolean) => ({ 'a-member': [true, true], 'b-member': [b, b], 'c-member': [false, false] });

      assert.deepEqual(await told(id, 'not-shared'), expect(false), 'before any sharing');
      assert.equal((await t.call('a-member', 'POST', `/v2/galleries/${top}/members`, { member: 'B' })).statusCode, 200);
      assert.deepEqual(await told(id, 'pending'), expect(false), 'B pending: told nothing (as a pending image member)');
      assert.equal((await t.call('b-member', 'PUT', `/v2/galleries/${top}/members/B`, { status: 'accepted' })).statusCode, 200);
      assert.deepEqual(await told(id, 'accepted'), expect(true), 'B accepted: delivered and streamed');
      assert.deepEqual(await told(outside, 'outside'), expect(false), 'an image outside the gallery stays A\'s');

      assert.equal((await t.patch('a-member', id, [{ op: 'remove', path: '/pir_gallery_id' }])).statusCode, 200);
      assert.deepEqual(await told(id, 'moved-out'), expect(false), 'moved out of the gallery: no longer told');
      assert.equal((await t.patch('a-member', id, [{ op: 'add', path: '/pir_gallery_id', value: top }])).statusCode, 200);
      assert.deepEqual(await told(id, 'moved-in'), expect(true), 'moved back in: told again');

      assert.equal((await t.call('a-member', 'PATCH', `/v2/galleries/${top}`, { visibility: 'private' })).statusCode, 200);
      assert.deepEqual(await told(id, 'suspended'), expect(false), 'gallery made private: members suspended');
      assert.equal((await t.call('a-member', 'PATCH', `/v2/galleries/${top}`, { visibility: 'shared' })).statusCode, 200);
      assert.deepEqual(await told(id, 'resumed'), expect(true), 'shared again: told again');

      assert.equal((await t.call('a-member', 'DELETE', `/v2/galleries/${top}/members/B`)).statusCode, 204);
      assert.deepEqual(await told(id, 'removed'), expect(false), 'B removed from the gallery: told nothing');
    } finally {
      for (const s of Object.values(streams)) s!.close();
    }
  });
});
