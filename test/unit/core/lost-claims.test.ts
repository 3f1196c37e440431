/** core/lost-claims.ts: a claim whose write landed but whose answer was lost is released, and nothing else is. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MongoNetworkError } from 'mongodb';
import { releaseLostClaim } from '../../../core/lost-claims.js';
import { domain, P } from './fixtures.js';

type Domain = Awaited<ReturnType<typeof domain>>;

/** The claim now on the image (its upload record). */
async function claimOn(d: Domain, id: string) {
  const upload = (await d.manifest.get(id))!.upload!;
  return { run: upload.run, started_at: upload.started_at };
}

const noWait = { sleep: async () => {} };

describe('lost claims', () => {
  it('puts an image claimed by a failed request back in queued, once', async () => {
    const d = await domain();
    try {
      const image = await d.images.create(P, { name: 'x', disk_format: 'raw', container_format: 'bare' });
      await d.images.beginUpload(P, image.id, 'upload');
      assert.equal((await d.manifest.get(image.id))!.status, 'saving');
      const claim = await claimOn(d, image.id);
      assert.equal(await releaseLostClaim(d.manifest, image.id, claim, noWait), true);
      const after = (await d.manifest.get(image.id))!;
      assert.equal(after.status, 'queued');
      assert.equal(after.upload, null);
      assert.equal(await releaseLostClaim(d.manifest, image.id, claim, noWait), false, 'nothing left to release');
    } finally {
      await d.close();
    }
  });

  it('leaves alone a claim that never landed, and a newer one', async () => {
    const d = await domain();
    try {
      const image = await d.images.create(P, { name: 'x', disk_format: 'raw', container_format: 'bare' });
      // A claim that never landed: its run number is the one the retry takes next.
      const never = { run: 1, started_at: new Date(Date.now() - 1000).toISOString() };
      const second = await d.images.beginUpload(P, image.id, 'upload');
      assert.equal(second.run, never.run);
      assert.equal(await releaseLostClaim(d.manifest, image.id, never, noWait), false);
      const live = await claimOn(d, image.id);
      assert.equal(await releaseLostClaim(d.manifest, image.id, { ...live, run: live.run - 1 }, noWait), false);
      const now = (await d.manifest.get(image.id))!;
      assert.equal(now.status, 'saving');
      assert.equal(now.upload?.run, second.run);
    } finally {
      await d.close();
    }
  });

  it('keeps trying while the manifest does not answer, for a bounded time', async () => {
    const d = await domain();
    try {
      const image = await d.images.create(P, { name: 'x', disk_format: 'raw', container_format: 'bare' });
      await d.images.beginUpload(P, image.id, 'upload');
      const claim = await claimOn(d, image.id);
      const replace = d.store.replace.bind(d.store);
      let refusals = 3;
      d.store.replace = async (doc, expected) => {
        if (refusals-- > 0) throw new MongoNetworkError('connect ECONNREFUSED 127.0.0.1:27017');
        return replace(doc, expected);
      };
      const sleeps: number[] = [];
      assert.equal(await releaseLostClaim(d.manifest, image.id, claim, { sleep: async (ms) => { sleeps.push(ms); } }), true);
      assert.deepEqual(sleeps, [500, 1000, 2000, 4000]);
      assert.equal((await d.manifest.get(image.id))!.status, 'queued');
      d.store.replace = replace;
      await d.images.beginUpload(P, image.id, 'upload');
      const next = await claimOn(d, image.id);
      d.store.replace = async () => { throw new MongoNetworkError('connect ECONNREFUSED 127.0.0.1:27017'); };
      assert.equal(await releaseLostClaim(d.manifest, image.id, next, { retryForMs: 0, ...noWait }), false, 'gives up');
      d.store.replace = replace;
      assert.equal((await d.manifest.get(image.id))!.status, 'saving');
    } finally {
      await d.close();
    }
  });

  it('an upload whose claim landed but whose answer was lost does not hold the image: the retry after the 503 gets it', async () => {
    const d = await domain();
    try {
      const image = await d.images.create(P, { name: 'x', disk_format: 'raw', container_format: 'bare' });
      const replace = d.store.replace.bind(d.store);
      let cut = true;
      d.store.replace = async (doc, expected) => {
        const won = await replace(doc, expected);
        if (cut) {
          cut = false;
          throw new MongoNetworkError('connection 1 to 127.0.0.1:27017 closed'); // written, answer lost
        }
        return won;
      };
      await assert.rejects(d.images.beginUpload(P, image.id, 'upload'), MongoNetworkError);
      assert.equal((await d.manifest.get(image.id))!.status, 'saving', 'the claim landed');
      const deadline = Date.now() + 5000;
      while ((await d.manifest.get(image.id))!.status !== 'queued') {
        assert.ok(Date.now() < deadline, 'released within 5 s');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const retry = await d.images.beginUpload(P, image.id, 'upload');
      assert.equal((await d.manifest.get(image.id))!.upload?.run, retry.run);
    } finally {
      await d.close();
    }
  });
});
