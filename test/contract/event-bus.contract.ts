/** The EventBus contract: every adapter passes the same suite. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { EventBus } from '../../core/ports.js';
import type { PirEvent } from '../../schemas/events.js';
import { requireServices } from '../support/services.js';
import type { ContractOptions } from './manifest-store.contract.js';
import { makeEvent, sleep, waitFor, within } from './helpers.js';

/** Each call must return a new bus on a new, empty topic. */
export type MakeBus = () => EventBus | Promise<EventBus>;

export interface EventBusContractOptions extends ContractOptions {
  /** How long deliveries may take before a test gives up (default 20 000 ms). */
  deliveryTimeoutMs?: number;
  /** Latency figures are printed with this label (diagnostic output, never asserted). */
  report?: (line: string) => void;
}

interface Delivery {
  member: string;
  event: PirEvent;
  at: number;
}

function seqOf(e: PirEvent): number {
  return (e.data as { attempt: number }).attempt;
}

/** Events for `images` images, `per` each, interleaved across images. */
function interleaved(images: string[], per: number): PirEvent[] {
  const out: PirEvent[] = [];
  for (let i = 0; i < per; i++) for (const img of images) out.push(makeEvent(img, i));
  return out;
}

function assertPerImageOrder(deliveries: Delivery[], images: string[], per: number, exactlyOnce: boolean): void {
  for (const img of images) {
    const seqs = deliveries.filter((d) => d.event.image_id === img).map((d) => seqOf(d.event));
    if (exactlyOnce) {
      assert.deepEqual(seqs, Array.from({ length: per }, (_, i) => i), `image ${img}: delivered ${seqs.join(',')}`);
    } else {
      // At least once: redeliveries may repeat a suffix, but the first deliveries are in order.
      const firsts: number[] = [];
      for (const s of seqs) if (!firsts.includes(s)) firsts.push(s);
      assert.deepEqual(firsts, Array.from({ length: per }, (_, i) => i), `image ${img}: delivered ${seqs.join(',')}`);
    }
  }
}

export function eventBusContract(name: string, makeBus: MakeBus, opts: EventBusContractOptions = {}): void {
  const timeout = opts.deliveryTimeoutMs ?? 20_000;
  test(`EventBus contract: ${name}`, { timeout: 180_000 }, async (t) => {
    if (!(await requireServices(t, opts.services ?? []))) return;
    const opened: EventBus[] = [];
    const fresh = async () => {
      const bus = await makeBus();
      opened.push(bus);
      return bus;
    };
    t.after(async () => {
      for (const b of opened) await b.close().catch(() => undefined);
      await opts.teardown?.();
    });

    await t.test('delivers every event once, in order per image, with its content intact', async () => {
      const bus = await fresh();
      const got: Delivery[] = [];
      await bus.subscribe('g-order', async (event) => {
        got.push({ member: 'a', event, at: Date.now() });
      });
      const images = Array.from({ length: 8 }, () => randomUUID());
      const events = interleaved(images, 15);
      events[3] = { ...events[3]!, traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' };
      for (let i = 0; i < events.length; i += 10) await bus.publish(events.slice(i, i + 10));
      await waitFor(`${events.length} deliveries (got ${got.length})`, () => got.length >= events.length, timeout);
      await sleep(200); // nothing extra arrives
      assert.equal(got.length, events.length);
      assertPerImageOrder(got, images, 15, true);
      const byId = new Map(got.map((d) => [d.event.id, d.event]));
      for (const e of events) assert.deepEqual(byId.get(e.id), e, 'event content round-trips');
    });

    await t.test('publish→handler latency (diagnostic)', async () => {
      const bus = await fresh();
      let resolveNext: ((at: number) => void) | null = null;
      await bus.subscribe('g-latency', async () => {
        resolveNext?.(performance.now());
      });
      const samples: number[] = [];
      const acks: number[] = [];
      for (let i = 0; i < 30; i++) {
        const arrived = new Promise<number>((resolve) => { resolveNext = resolve; });
        const t0 = performance.now();
        await bus.publish([makeEvent(randomUUID(), i)]);
        const acked = performance.now();
        const at = await within('the event', arrived, timeout);
        if (i >= 5) { // skip warm-up
          samples.push(at - t0);
          acks.push(acked - t0);
        }
      }
      const p = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!.toFixed(2);
      opts.report?.(`${name}: publish→handler p50 ${p(samples, 0.5)} ms, p90 ${p(samples, 0.9)} ms, max ${p(samples, 1)} ms; publish resolved p50 ${p(acks, 0.5)} ms (${samples.length} samples)`);
    });

    await t.test('at least once: a throwing handler gets the event again, order kept, other images flow', async () => {
      const bus = await fresh();
      const got: Delivery[] = [];
      const failing = randomUUID();
      const other = randomUUID();
      let failures = 0;
      await bus.subscribe('g-retry', async (event) => {
        got.push({ member: 'a', event, at: Date.now() });
        if (event.image_id === failing && seqOf(event) === 1 && failures < 3) {
          failures++;
          throw new Error(`injected failure ${failures}`);
        }
      });
      await bus.publish(interleaved([failing, other], 4));
      await waitFor('the failing event to succeed and the rest to arrive', () => {
        const f = got.filter((d) => d.event.image_id === failing);
        return failures === 3 && f.length >= 4 + 3 && got.filter((d) => d.event.image_id === other).length >= 4;
      }, timeout);
      assertPerImageOrder(got, [failing, other], 4, false);
      const f = got.filter((d) => d.event.image_id === failing).map((d) => seqOf(d.event));
      assert.deepEqual(f.slice(0, 5), [0, 1, 1, 1, 1], 'seq 1 redelivered until it succeeded, before seq 2');
      assert.deepEqual(got.filter((d) => d.event.image_id === other).map((d) => seqOf(d.event)), [0, 1, 2, 3]);
    });

    await t.test('two groups each get every event', async () => {
      const bus = await fresh();
      const a: Delivery[] = [];
      const b: Delivery[] = [];
      await bus.subscribe('g-one', async (event) => { a.push({ member: 'a', event, at: Date.now() }); });
      await bus.subscribe('g-two', async (event) => { b.push({ member: 'b', event, at: Date.now() }); });
      const images = Array.from({ length: 5 }, () => randomUUID());
      const events = interleaved(images, 6);
      await bus.publish(events);
      await waitFor('both groups to receive everything', () => a.length >= events.length && b.length >= events.length, timeout);
      await sleep(200);
      assertPerImageOrder(a, images, 6, true);
      assertPerImageOrder(b, images, 6, true);
    });

    await t.test('every watcher sees the events published after it started watching, until it stops', async () => {
      const bus = await fresh();
      const before = makeEvent(randomUUID(), 0);
      await bus.publish([before]);
      const first: PirEvent[] = [];
      const second: PirEvent[] = [];
      const stopFirst = await bus.watch(async (event) => { first.push(event); });
      const stopSecond = await bus.watch(async (event) => { second.push(event); });
      const image = randomUUID();
      await bus.publish([makeEvent(image, 1), makeEvent(image, 2)]);
      await waitFor('both watchers to see both events', () => first.length >= 2 && second.length >= 2, timeout);
      for (const seen of [first, second]) {
        assert.deepEqual(seen.filter((e) => e.image_id === image).map(seqOf), [1, 2]);
        assert.ok(!seen.some((e) => e.id === before.id), 'nothing from before the watch began');
      }
      await stopFirst();
      await bus.publish([makeEvent(image, 3)]);
      await waitFor('the remaining watcher to see the next event', () => second.length >= 3, timeout);
      await sleep(300);
      assert.equal(first.length, 2, 'a stopped watcher gets nothing more');
      await stopSecond();
    });

    await t.test('two members of one group split the events without loss or duplication', async () => {
      const bus = await fresh();
      const got: Delivery[] = [];
      await bus.subscribe('g-split', async (event) => { got.push({ member: 'm1', event, at: Date.now() }); });
      await bus.subscribe('g-split', async (event) => { got.push({ member: 'm2', event, at: Date.now() }); });
      const images = Array.from({ length: 40 }, () => randomUUID());
      const events = interleaved(images, 3);
      await bus.publish(events);
      await waitFor(`all ${events.length} events (got ${got.length})`, () => got.length >= events.length, timeout);
      await sleep(300);
      assert.equal(got.length, events.length, 'no duplicates');
      assert.equal(new Set(got.map((d) => d.event.id)).size, events.length, 'no loss');
      assertPerImageOrder(got, images, 3, true);
      const members = new Set(got.map((d) => d.member));
      assert.deepEqual([...members].sort(), ['m1', 'm2'], 'both members got a share');
      for (const img of images) {
        const who = new Set(got.filter((d) => d.event.image_id === img).map((d) => d.member));
        assert.equal(who.size, 1, `image ${img} stays with one member`);
      }
    });

    await t.test('publishing nothing is a no-op; close stops delivery', async () => {
      const bus = await fresh();
      const got: PirEvent[] = [];
      await bus.subscribe('g-close', async (e) => { got.push(e); });
      await bus.publish([]);
      await bus.publish([makeEvent(randomUUID())]);
      await waitFor('one delivery', () => got.length === 1, timeout);
      await bus.close();
      await assert.rejects(bus.publish([makeEvent(randomUUID())]));
    });
  });
}
