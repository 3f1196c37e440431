import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { scriptArgs } from '../../support/child-script.js';

/** Starts the child, waits until it is ready, sends the signals (the next one 200 ms after the one before). */
async function signalled(signals: NodeJS.Signals[], mode = ''): Promise<{ code: number | null; stderr: string; ms: number }> {
  const child = spawn(process.execPath, [...scriptArgs('./interrupt-child', import.meta.url), mode], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => { stderr += c; });
  await once(child.stdout!, 'data');
  const t0 = Date.now();
  for (const [i, signal] of signals.entries()) {
    if (i > 0) await new Promise((r) => setTimeout(r, 200));
    child.kill(signal);
  }
  const [code] = await once(child, 'exit');
  return { code: code as number | null, stderr, ms: Date.now() - t0 };
}

describe('pir on a signal (cli/interrupt.ts)', () => {
  for (const [signal, code, said] of [['SIGINT', 130, 'interrupted'], ['SIGTERM', 143, 'interrupted (SIGTERM)'], ['SIGHUP', 129, 'interrupted (SIGHUP)']] as const) {
    it(`${signal}: gives the terminal back, waits for the endings, prints the notes, exits ${code}`, async () => {
      const r = await signalled([signal]);
      assert.equal(r.code, code, r.stderr);
      assert.equal(r.stderr, `cleanup\n\npir: ${said}\nended\npir: what was left\n`);
    });
  }

  it('a second signal cuts the wait for an ending that does not finish', async () => {
    const r = await signalled(['SIGTERM', 'SIGINT'], 'hang');
    assert.equal(r.code, 143, r.stderr);
    assert.equal(r.stderr, 'cleanup\n\npir: interrupted (SIGTERM)\npir: what was left\n');
    assert.ok(r.ms < 4000, `exited after ${r.ms} ms`);
  });
});
