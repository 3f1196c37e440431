/**
 * Mutual exclusion across processes on MongoDB, within FerretDB v1's limits: the one atomic check
 * FerretDB 1.x makes is an insert's unique _id (see mongo-manifest-store.ts), so a lease is the
 * insert of its slot, never an update's or a delete's filter:
 * - the leases of name `x` are slots `x:1`, `x:2`, … (never deleted: a freed number taken again
 *   would let a second holder in). Slot k + 1 may be taken once slot k is released or its lease
 *   ran out (its holder died or froze); the insert decides between takers.
 * - the holder releases by marking its own slot (only it writes that document).
 * - `<x>` in the heads collection is a hint to the newest slot (it may trail: racing takers,
 *   a crash); every taker steps forward from it while the next slot exists.
 * For what changes rarely and must not interleave (a project's gallery tree, one webhook): a few
 * commands per change. Within one process, callers of one name queue first (core/keyed-mutex.ts).
 */
import type { Collection } from 'mongodb';
import { fail } from '../../core/error-catalog.js';
import { KeyedMutex } from '../../core/keyed-mutex.js';
import { writeFailure } from './group-writer.js';

type SlotDoc = { _id: string; until: number; released: boolean };
type HeadDoc = { _id: string; k: number };

export interface LeaseSettings {
  /** How long a slot holds without being released (a holder that died frees it after this). */
  leaseMs: number;
  /** How long a taker waits for a held lease before giving up (503). */
  waitMs: number;
}

const DEFAULTS: LeaseSettings = { leaseMs: 15_000, waitMs: 10_000 };
const slotId = (name: string, k: number) => `${name}:${String(k).padStart(10, '0')}`;
const isDuplicate = (err: unknown) => writeFailure(err).code === 11000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class MongoLeases {
  private readonly local = new KeyedMutex();
  private readonly settings: LeaseSettings;

  constructor(private readonly slots: Collection<SlotDoc>, private readonly heads: Collection<HeadDoc>, settings: Partial<LeaseSettings> = {}) {
    this.settings = { ...DEFAULTS, ...settings };
  }

  /** Runs `fn` while no other caller of `name`, in any process sharing the database, runs; `what` names it in a refusal. */
  run<T>(name: string, what: string, fn: () => Promise<T>): Promise<T> {
    return this.local.run(name, async () => {
      const slot = await this.take(name, what);
      try {
        return await fn();
      } finally {
        await this.slots.replaceOne({ _id: slot }, { until: 0, released: true }).catch(() => undefined); // else it frees itself when the lease runs out
      }
    });
  }

  private async take(name: string, what: string): Promise<string> {
    const deadline = Date.now() + this.settings.waitMs;
    let k = (await this.heads.findOne({ _id: name }))?.k ?? 0;
    for (let pause = 5; ; pause = Math.min(pause * 2, 200)) {
      let newest: SlotDoc | null = k === 0 ? null : await this.slots.findOne({ _id: slotId(name, k) });
      for (let next = await this.slots.findOne({ _id: slotId(name, k + 1) }); next; next = await this.slots.findOne({ _id: slotId(name, k + 1) })) {
        newest = next;
        k += 1;
      }
      if (newest === null || newest.released || newest.until < Date.now()) {
        try {
          await this.slots.insertOne({ _id: slotId(name, k + 1), until: Date.now() + this.settings.leaseMs, released: false });
          await this.heads.replaceOne({ _id: name }, { k: k + 1 }, { upsert: true }).catch(() => undefined); // a hint only
          return slotId(name, k + 1);
        } catch (err) {
          if (!isDuplicate(err)) throw err;
          continue; // another taker won k + 1: look again
        }
      }
      if (Date.now() > deadline) throw fail('change_contention', `Another change of ${what} has been under way for over ${Math.round(this.settings.waitMs / 1000)} s; retry.`);
      await sleep(pause * (0.5 + Math.random()));
    }
  }
}
