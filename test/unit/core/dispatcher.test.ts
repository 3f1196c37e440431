import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import type { StageJob } from '../../../core/ports.js';
import { MemoryJobQueue } from '../../../infra/embedded/memory-job-queue.js';
import { STAGES } from '../../../schemas/image.js';
import { startDispatcher } from '../../../workers/dispatcher.js';
import { P, domain, silent } from './fixtures.js';

/** Uploads `size` bytes' worth of staging (the bytes themselves don't matter to the dispatcher). */
async function upload(d: Awaited<ReturnType<typeof domain>>, size: number): Promise<string> {
  const image = await d.images.create(P, { name: 'n', disk_format: 'raw', container_format: 'bare' });
  const ticket = await d.images.beginUpload(P, image.id, 'upload');
  await writeFile(d.blobs.pathOf(ticket.stagingKey), 'x');
  await d.images.completeUpload(P, image.id, ticket.run, { key: ticket.stagingKey, size, md5: 'm', sha512: 's' });
  return image.id;
}

describe('dispatcher', () => {
  it('gives an image up to the size limit one fused job, a larger one a job per stage', async () => {
    const d = await domain();
    const queue = new MemoryJobQueue({ retry: { attempts: 1, backoffMs: 1 }, logger: silent });
    const seen: StageJob[] = [];
    for (const stage of STAGES) await queue.process(stage, 1, async (job) => { seen.push(job); });
    await startDispatcher(d.bus, d.manifest, queue, silent, { fusedStagesMaxSize: 1000 });
    const small = await upload(d, 1000);
    const large = await upload(d, 1001);
    await d.relay.drain();
    const deadline = Date.now() + 5000;
    while (seen.filter((j) => j.imageId === large).length < 4 || !seen.some((j) => j.imageId === small)) {
      if (Date.now() > deadline) throw new Error(`jobs seen: ${JSON.stringify(seen)}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.deepEqual(seen.filter((j) => j.imageId === small).map((j) => [j.stage, j.fused]), [['unpack', true]]);
    assert.deepEqual(seen.filter((j) => j.imageId === large).map((j) => [j.stage, j.fused]), STAGES.map((s) => [s, undefined]));
    await queue.close();
    await d.close();
  });
});
