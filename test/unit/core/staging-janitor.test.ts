import assert from 'node:assert/strict';
import { stagingKey } from '../../../core/blob-keys.js';
import { access, utimes, writeFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { Sweepers } from '../../../workers/sweepers.js';
import { P, domain, silent } from './fixtures.js';

const settings = { stageDeadlineSeconds: 60, uploadStallSeconds: 30, maxResumes: 1, outboxGraceMs: 0 };
const exists = (path: string) => access(path).then(() => true, () => false);

describe('staging janitor', () => {
  it('removes staging files of images that no longer need them, once they are old, and keeps the rest', async () => {
    const d = await domain();
    const sweepers = new Sweepers(d.manifest, d.images, d.relay, d.blobs, settings, silent);
    const receiving = await d.images.create(P, { name: 'receiving', disk_format: 'raw', container_format: 'bare' });
    const ticket = await d.images.beginUpload(P, receiving.id, 'upload');
    const done = await d.images.create(P, { name: 'queued again' });
    const orphan = d.blobs.pathOf(stagingKey(done.id, 1, 'upload'));
    const unknown = d.blobs.pathOf(stagingKey('00000000-0000-4000-8000-00000000dead', 1, 'unpacked'));
    const fresh = d.blobs.pathOf(stagingKey(done.id, 2, 'unpacked'));
    const receivingPath = d.blobs.pathOf(ticket.stagingKey);
    for (const path of [receivingPath, orphan, unknown, fresh]) await writeFile(path, 'x');
    const old = new Date(Date.now() - 120_000);
    for (const path of [receivingPath, orphan, unknown]) await utimes(path, old, old);

    await sweepers.removeOrphanStaging();
    assert.equal(await exists(receivingPath), true, 'an upload still receiving keeps its file');
    assert.equal(await exists(orphan), false, 'a queued image needs no staging file');
    assert.equal(await exists(unknown), false, 'nor does an image that no longer exists');
    assert.equal(await exists(fresh), true, 'a recent file is left alone (its writer may not have recorded it yet)');
    await d.close();
  });

  it('is not part of the stale sweep: a dead upload is given up without listing staging (on S3 the listing holds every stored image)', async () => {
    const d = await domain();
    // A store whose listing never answers: the stale sweep must not wait on it.
    const listingHangs = new Proxy(d.blobs, {
      get: (target, key) => {
        if (key === 'list') return () => new Promise(() => {});
        const value: unknown = Reflect.get(target, key);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const sweepers = new Sweepers(d.manifest, d.images, d.relay, listingHangs, settings, silent);
    const image = await d.images.create(P, { name: 'dead upload', disk_format: 'raw', container_format: 'bare' });
    await d.images.beginUpload(P, image.id, 'upload');
    let timer: NodeJS.Timeout | undefined;
    const hung = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('the stale sweep waited on the staging listing')), 5000); });
    await Promise.race([sweepers.sweepStale(Date.now() + 31_000), hung]).finally(() => clearTimeout(timer));
    assert.equal((await d.manifest.get(image.id))!.status, 'queued', 'the stalled upload was given up');
    await d.close();
  });
});
