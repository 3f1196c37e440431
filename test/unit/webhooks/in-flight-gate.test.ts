import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InFlightGate } from '../../../core/webhooks/in-flight.js';

/** A task that runs until released, recording when it started. */
function held(log: string[], name: string) {
  let release!: () => void;
  const done = new Promise<void>((resolve) => { release = resolve; });
  return { task: async () => { log.push(name); await done; }, release };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('webhook in-flight gate', () => {
  it('keeps a quarter of the slots for other keys, and gives freed slots to keys in turn', async () => {
    const gate = new InFlightGate(4); // a key holds at most 3
    const log: string[] = [];
    const a = Array.from({ length: 6 }, (_, n) => held(log, `a${n}`));
    const runs = a.map((h) => gate.run('a', h.task));
    await tick();
    assert.deepEqual(log, ['a0', 'a1', 'a2'], 'one key alone takes three of four slots');
    const b = [held(log, 'b0'), held(log, 'b1'), held(log, 'b2')];
    runs.push(...b.map((h) => gate.run('b', h.task)));
    await tick();
    assert.deepEqual(log.slice(3), ['b0'], 'another key starts at once in the slot kept free');
    a[0]!.release();
    await tick();
    assert.deepEqual(log.slice(4), ['a3'], "a's freed slot: a is below its share again and first in turn");
    b[0]!.release();
    await tick();
    assert.deepEqual(log.slice(5), ['b1'], "b's turn follows a's");
    a[1]!.release();
    a[2]!.release();
    await tick();
    assert.deepEqual(log.slice(6), ['a4', 'b2'], 'turns alternate while both wait');
    for (const h of [...a, ...b]) h.release();
    await Promise.all(runs);
    assert.deepEqual(log.sort(), ['a0', 'a1', 'a2', 'a3', 'a4', 'a5', 'b0', 'b1', 'b2']);
  });

  it('frees the slot of a task that throws, and a gate of one still runs everything', async () => {
    const gate = new InFlightGate(1);
    await assert.rejects(gate.run('a', async () => { throw new Error('boom'); }), /boom/);
    const order: string[] = [];
    await Promise.all(['a', 'b', 'a', 'c'].map((key, n) => gate.run(key, async () => { order.push(`${key}${n}`); })));
    assert.equal(order.length, 4);
  });
});
