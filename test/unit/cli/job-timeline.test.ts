/**
 * cli/job-commands.ts timelineOf: what `pir job show` shows of an image's run.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { timelineOf } from '../../../cli/job-commands.js';
import type { Image } from '../../../client/index.js';

describe('pir job show: the run of an image', () => {
  it('shows an import that failed before its bytes were in (no stages) by its run and reason', () => {
    const failure = { stage: 'import', code: 'connection_failed', message: 'web-download of https://x.example/disk failed: refused', at: '2026-12-06T11:00:00Z', run: 2, method: 'web-download' };
    const image = { id: 'img', status: 'killed', pir_failure: failure } as unknown as Image;
    assert.deepEqual(timelineOf(image), { image_id: 'img', run: 2, method: 'web-download', status: 'killed', stages: [], failure });
  });

  it('has nothing to show for an image that never ran an import', () => {
    assert.equal(timelineOf({ id: 'img', status: 'queued' } as unknown as Image), null);
  });
});
