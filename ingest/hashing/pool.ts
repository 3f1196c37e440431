/**
 * HashPool: a few long-lived worker threads that compute md5 and sha512 for every upload in the
 * process, so the main thread stays free for HTTP. Each upload (a HashSession) runs its md5 on
 * one thread and its sha512 on another; bytes travel in shared-memory slots (SharedArrayBuffer)
 * that both hash threads and the file write read in place, so each byte is copied once (from
 * the socket's buffer into a slot) and never again.
 *
 * Memory is bounded: a session holds at most `slotsPerStream` slots; beyond its first two
 * (always granted, so a session can never starve) slots come from a pool-wide budget.
 */
import { availableParallelism } from 'node:os';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { HashAlgorithm, WorkerReply, WorkerRequest } from './protocol.js';

const MiB = 1024 * 1024;

/** The worker next to this module, with this module's own extension (.js in dist/, .ts under tsx). */
const WORKER_URL = new URL('./hash-worker' + extname(fileURLToPath(import.meta.url)), import.meta.url);

/**
 * Starts the hash worker. Compiled (.js): directly. Under tsx (.ts): Node 20 does not apply the
 * `--import tsx` hooks a Worker inherits through execArgv to the worker's own entry module
 * (nodejs/node#47747, privatenumber/tsx#354), so a two-line bootstrap registers tsx's
 * require hook in the worker and loads the .ts file through it.
 */
function startWorker(): Worker {
  const path = fileURLToPath(WORKER_URL);
  if (extname(path) !== '.ts') return new Worker(WORKER_URL, { name: 'pir-hash' });
  const bootstrap = `const r = require('node:module').createRequire(${JSON.stringify(path)});
r('tsx/cjs/api').register();
r(${JSON.stringify(path)});`;
  return new Worker(bootstrap, { eval: true, name: 'pir-hash' });
}

export interface HashPoolOptions {
  /** Worker threads. Default: available cores clamped to 2..4 (md5 and sha512 need one each). */
  threads?: number;
  /** Bytes per shared slot, i.e. per hash update and per file write. Default 1 MiB. */
  slotBytes?: number;
  /** Most slots one upload may have in flight (filling, hashing or writing). Default 8. */
  slotsPerStream?: number;
  /** Pool-wide bytes of slots beyond each upload's first two, and of slabs kept when idle. Default 64 MiB. */
  memoryBudgetBytes?: number;
}

export interface Digests {
  md5: string;
  sha512: string;
}

type Callback = (err: Error | null, digest?: string) => void;
type Request = WorkerRequest extends infer R ? (R extends { j: number } ? Omit<R, 'j'> : never) : never;

/** One worker thread and the requests it has not answered yet. */
class HashThread {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Callback>();
  private nextJob = 1;
  /** Open streams on this thread, for placing new ones. */
  load = 0;
  dead: Error | null = null;

  constructor(private readonly onDead: (t: HashThread) => void) {
    this.worker = startWorker();
    this.worker.unref(); // idle threads never keep the process alive; ref'd while a job is pending
    this.worker.on('message', (r: WorkerReply) => {
      if (typeof r === 'number') this.settle(r, null);
      else if (Array.isArray(r)) for (const j of r) this.settle(j, null);
      else if ('d' in r) this.settle(r.j, null, r.d);
      else this.settle(r.j, new Error(`hash worker: ${r.e}`));
    });
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('messageerror', (err) => this.fail(err));
    this.worker.on('exit', (code) => this.fail(new Error(`hash worker exited (code ${code})`)));
  }

  request(msg: Request, cb: Callback): void {
    if (this.dead) {
      const err = this.dead;
      queueMicrotask(() => cb(err));
      return;
    }
    const j = this.nextJob++;
    if (this.pending.size === 0) this.worker.ref();
    this.pending.set(j, cb);
    this.worker.postMessage({ ...msg, j } as WorkerRequest);
  }

  private settle(j: number, err: Error | null, digest?: string): void {
    const cb = this.pending.get(j);
    if (!cb) return;
    this.pending.delete(j);
    if (this.pending.size === 0 && !this.dead) this.worker.unref();
    cb(err, digest);
  }

  fail(err: Error): void {
    if (this.dead) return;
    this.dead = err;
    const cbs = [...this.pending.values()];
    this.pending.clear();
    this.onDead(this);
    for (const cb of cbs) cb(err);
  }

  async terminate(): Promise<void> {
    this.fail(new Error('hash pool closed'));
    await this.worker.terminate();
  }
}

/** A shared-memory buffer one upload fills, then hands to both hash threads and the file write. */
export interface Slot {
  readonly sab: SharedArrayBuffer;
  /** Where this slot starts in `sab`. */
  readonly offset: number;
  /** The slot's bytes: `sab[offset, offset + slotBytes)`. */
  readonly view: Uint8Array;
  /** Page-aligned (usable for O_DIRECT writes). */
  readonly aligned: boolean;
  /** Readers still using it (hash threads, writes); the slot is free again at 0. */
  pending: number;
  readonly slab: Slab;
}

interface Slab {
  readonly slots: Slot[];
  inUse: number;
}

const WASM_PAGE = 64 * 1024;
const SLAB_SLOTS = 16;

/**
 * Slots come in slabs. A slab is a shared WebAssembly.Memory when it can be: its buffer is a
 * SharedArrayBuffer whose memory is page-aligned (mmap'd by V8), so the file write can use
 * O_DIRECT straight from the slot — a plain SharedArrayBuffer is only 16-byte aligned.
 */
function newSlab(slotBytes: number, count: number): Slab {
  let sab: SharedArrayBuffer;
  let aligned = false;
  const bytes = slotBytes * count;
  if (bytes % WASM_PAGE === 0) {
    try {
      const pages = bytes / WASM_PAGE;
      sab = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }).buffer as unknown as SharedArrayBuffer;
      aligned = true;
    } catch {
      sab = new SharedArrayBuffer(bytes); // address space for wasm memories exhausted: still works, buffered
    }
  } else {
    sab = new SharedArrayBuffer(bytes);
  }
  const slab: Slab = { slots: [], inUse: 0 };
  for (let i = 0; i < count; i++) {
    const offset = i * slotBytes;
    slab.slots.push({
      sab,
      offset,
      view: new Uint8Array(sab, offset, slotBytes),
      aligned,
      pending: 0,
      slab,
    });
  }
  return slab;
}

export class HashPool {
  private static sharedPool: HashPool | null = null;

  /** The process-wide pool every upload shares (created on first use). */
  static shared(): HashPool {
    if (!HashPool.sharedPool || HashPool.sharedPool.closed) HashPool.sharedPool = new HashPool();
    return HashPool.sharedPool;
  }

  readonly threadCount: number;
  readonly slotBytes: number;
  readonly slotsPerStream: number;
  private readonly budgetSlots: number;
  private readonly threads: (HashThread | null)[];
  private readonly freeSlots: Slot[] = [];
  private slotsInUse = 0;
  private slabs = 0;
  private nextStream = 1;
  private rotate = 0;
  private closed = false;

  constructor(opts: HashPoolOptions = {}) {
    this.threadCount = Math.max(2, Math.floor(opts.threads ?? Math.min(availableParallelism(), 4)));
    this.slotBytes = opts.slotBytes ?? MiB;
    this.slotsPerStream = Math.max(2, opts.slotsPerStream ?? 8);
    this.budgetSlots = Math.max(0, Math.floor((opts.memoryBudgetBytes ?? 64 * MiB) / this.slotBytes));
    if (!Number.isInteger(this.slotBytes) || this.slotBytes < 4096 || this.slotBytes % 4096 !== 0) throw new RangeError('slotBytes must be a multiple of 4096');
    this.threads = new Array<HashThread | null>(this.threadCount).fill(null);
  }

  /** Bytes of shared slots allocated right now (in use and cached). */
  get slotMemoryBytes(): number {
    return this.slabs * SLAB_SLOTS * this.slotBytes;
  }

  /** Starts md5 and sha512 of one byte stream, on two different threads. */
  open(): HashSession {
    if (this.closed) throw new Error('HashPool is closed');
    for (let i = 0; i < this.threadCount; i++) this.threads[i] ??= new HashThread((t) => this.forget(t));
    // Least-loaded thread takes the sha512, the next one the md5; ties rotate.
    const order = this.threads.map((_, i) => (i + this.rotate) % this.threadCount);
    this.rotate = (this.rotate + 1) % this.threadCount;
    order.sort((a, b) => this.threads[a]!.load - this.threads[b]!.load);
    const sha = this.threads[order[0]!]!;
    const md5 = this.threads[order[1]!]!;
    return new HashSession(this, md5, sha, this.nextStream++, this.nextStream++);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (HashPool.sharedPool === this) HashPool.sharedPool = null;
    const threads = this.threads.filter((t): t is HashThread => t !== null);
    this.threads.fill(null);
    this.freeSlots.length = 0;
    this.slabs = 0;
    await Promise.all(threads.map((t) => t.terminate()));
  }

  private forget(t: HashThread): void {
    const i = this.threads.indexOf(t);
    if (i >= 0) this.threads[i] = null; // replaced on the next open()
  }

  /** @internal */
  mayGrow(): boolean {
    return this.slotsInUse < this.budgetSlots;
  }

  /** @internal */
  takeSlot(): Slot {
    this.slotsInUse++;
    let s = this.freeSlots.pop();
    if (!s) {
      const slab = newSlab(this.slotBytes, SLAB_SLOTS);
      this.slabs++;
      s = slab.slots.pop()!;
      // reversed, so pop() hands out ascending offsets
      for (let i = slab.slots.length - 1; i >= 0; i--) this.freeSlots.push(slab.slots[i]!);
      slab.slots.push(s);
    }
    s.slab.inUse++;
    return s;
  }

  /** @internal */
  returnSlot(s: Slot): void {
    this.slotsInUse--;
    s.slab.inUse--;
    this.freeSlots.push(s);
    // Over budget and this slab is entirely free: drop it (the GC frees its memory).
    if (s.slab.inUse === 0 && this.slabs * SLAB_SLOTS > this.budgetSlots) {
      const slab = s.slab;
      const keep = this.freeSlots.filter((x) => x.slab !== slab);
      this.freeSlots.length = 0;
      this.freeSlots.push(...keep);
      this.slabs--;
    }
  }
}

/**
 * md5 + sha512 of one byte stream. Single producer: one caller fills slots in order and
 * submits them; readers (the two hash threads and any `extra` the caller declares, such as a
 * file write) release a slot by completing it.
 */
export class HashSession {
  /** First failure of a hash thread; the producer should stop. */
  error: Error | null = null;
  private held = 0;
  private slotWaiter: (() => void) | null = null;
  private idleWaiters: (() => void)[] = [];
  private ended = false;

  constructor(
    private readonly pool: HashPool,
    private readonly md5: HashThread,
    private readonly sha: HashThread,
    private readonly md5Id: number,
    private readonly shaId: number,
  ) {
    md5.load++;
    sha.load++;
    const onOpen: Callback = (err) => {
      if (err) this.fail(err);
    };
    md5.request({ t: 'o', s: md5Id, a: 'md5' satisfies HashAlgorithm }, onOpen);
    sha.request({ t: 'o', s: shaId, a: 'sha512' satisfies HashAlgorithm }, onOpen);
  }

  get slotBytes(): number {
    return this.pool.slotBytes;
  }

  /** A free slot now, or null when this session is at its limit (then `waitForSlot()`). */
  tryAcquire(): Slot | null {
    if (this.held < 2 || (this.held < this.pool.slotsPerStream && this.pool.mayGrow())) {
      this.held++;
      return this.pool.takeSlot();
    }
    return null;
  }

  /** Resolves when one of this session's slots is released. */
  waitForSlot(): Promise<void> {
    return new Promise((resolve) => {
      this.slotWaiter = resolve;
    });
  }

  async acquire(): Promise<Slot> {
    for (;;) {
      const s = this.tryAcquire();
      if (s) return s;
      await this.waitForSlot();
    }
  }

  /** Returns a slot that was acquired but not submitted. */
  release(slot: Slot): void {
    this.held--;
    this.pool.returnSlot(slot);
    const w = this.slotWaiter;
    if (w) {
      this.slotWaiter = null;
      w();
    }
    if (this.held === 0 && this.idleWaiters.length) {
      const ws = this.idleWaiters;
      this.idleWaiters = [];
      for (const f of ws) f();
    }
  }

  /**
   * Hashes the first `n` bytes of `slot` (in submission order). The slot is released once both
   * hash threads and `extra` other readers, each calling `complete(slot)`, are done with it.
   */
  submit(slot: Slot, n: number, extra = 0): void {
    if (this.ended) throw new Error('hash session already ended');
    slot.pending = 2 + extra;
    const done: Callback = (err) => {
      if (err) this.fail(err);
      this.complete(slot);
    };
    this.sha.request({ t: 'u', s: this.shaId, b: slot.sab, o: slot.offset, n }, done);
    this.md5.request({ t: 'u', s: this.md5Id, b: slot.sab, o: slot.offset, n }, done);
  }

  /**
   * Hashes `view`, a view of shared memory the caller owns (e.g. an object store's part buffer,
   * so its bytes are not copied again into a slot), after everything submitted before it.
   * `done` runs once both hash threads have read it; until then the bytes must not change.
   */
  hashShared(view: Uint8Array, done: () => void): void {
    if (this.ended) throw new Error('hash session already ended');
    if (!(view.buffer instanceof SharedArrayBuffer)) throw new TypeError('hashShared needs a view of a SharedArrayBuffer');
    let left = 2;
    const cb: Callback = (err) => {
      if (err) this.fail(err);
      if (--left === 0) done();
    };
    this.sha.request({ t: 'u', s: this.shaId, b: view.buffer, o: view.byteOffset, n: view.byteLength }, cb);
    this.md5.request({ t: 'u', s: this.md5Id, b: view.buffer, o: view.byteOffset, n: view.byteLength }, cb);
  }

  complete(slot: Slot): void {
    if (--slot.pending === 0) this.release(slot);
  }

  /** Resolves when every slot of this session is free again. */
  idle(): Promise<void> {
    if (this.held === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Ends the session and returns both digests (of everything submitted). */
  digests(): Promise<Digests> {
    this.end();
    const one = (t: HashThread, s: number) =>
      new Promise<string>((resolve, reject) => {
        t.request({ t: 'd', s }, (err, d) => (err ? reject(err) : resolve(d!)));
      });
    return Promise.all([one(this.md5, this.md5Id), one(this.sha, this.shaId)]).then(([md5, sha512]) => {
      if (this.error) throw this.error;
      return { md5, sha512 };
    });
  }

  /** Ends the session, discarding the digests. Slots in flight still get released. */
  abort(): void {
    if (this.ended) return;
    this.end();
    const ignore: Callback = () => {};
    this.md5.request({ t: 'x', s: this.md5Id }, ignore);
    this.sha.request({ t: 'x', s: this.shaId }, ignore);
  }

  private end(): void {
    if (this.ended) throw new Error('hash session already ended');
    this.ended = true;
    this.md5.load--;
    this.sha.load--;
  }

  private fail(err: Error): void {
    this.error ??= err;
  }
}
