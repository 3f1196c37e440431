/** cli/main.ts: a reader that stops early (`pir … | head`) ends pir quietly with 141, not with a stack trace. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { PIR_CLI } from '../../support/pir-cli.js';

describe('pir with its output pipe closed early', () => {
  it('exits 141 (128 + SIGPIPE) and prints nothing on stderr', async () => {
    // The bash completion script is written in one go after startup, by then the pipe is gone.
    const child = spawn(process.execPath, [PIR_CLI, 'completion', 'bash'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk; });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(stderr, '');
    assert.equal(code, 141);
  });
});
