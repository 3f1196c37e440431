import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { allowedTargets, canTransition } from '../../../schemas/state-machine.js';
import { IMAGE_STATUSES } from '../../../schemas/image.js';

describe('image state machine', () => {
  it('follows the upload and import paths to active', () => {
    for (const [from, to] of [['queued', 'saving'], ['saving', 'importing'], ['queued', 'uploading'], ['uploading', 'importing'], ['importing', 'active']] as const) {
      assert.ok(canTransition(from, to), `${from} → ${to}`);
    }
  });
  it('ends failed imports in killed, never back in queued', () => {
    assert.ok(canTransition('importing', 'killed'));
    assert.ok(!canTransition('importing', 'queued'));
    assert.deepEqual(allowedTargets('killed'), ['deleted']);
  });
  it('returns an interrupted upload to queued', () => {
    assert.ok(canTransition('saving', 'queued'));
    assert.ok(canTransition('uploading', 'queued'));
  });
  it('makes deleted terminal and lets every other status be deleted', () => {
    assert.deepEqual(allowedTargets('deleted'), []);
    for (const status of IMAGE_STATUSES.filter((s) => s !== 'deleted')) assert.ok(canTransition(status, 'deleted'), status);
  });
  it('refuses jumps that skip the pipeline', () => {
    assert.ok(!canTransition('saving', 'uploading'));
    assert.ok(!canTransition('killed', 'active'));
    assert.ok(!canTransition('active', 'importing'));
  });
});
