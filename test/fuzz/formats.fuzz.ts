// Property-based fuzzing of detectFormat/judge: mutate valid headers of every
// format and check the inspector never throws, never hangs and stays bounded.
import * as fc from 'fast-check';
import { detectFormat, FINDING_CODES, judge, READ_BUDGET, VERDICT_CODES } from '../../formats/index.js';
import type { FormatReport } from '../../formats/index.js';
import { buildSeeds, SparseReader } from './seeds.js';
import type { Seed, Segment } from './seeds.js';

const FORMATS = new Set(['raw', 'qcow2', 'qed', 'vmdk', 'vhd', 'vhdx', 'vdi', 'iso', 'luks', 'ploop', 'gpt', 'mbr']);
const CALL_LIMIT_MS = 1000;

type Mutation =
  | { kind: 'flip'; pos: number; bit: number; nearField: boolean }
  | { kind: 'field'; field: number; value: bigint; width: 1 | 2 | 4 | 8; le: boolean }
  | { kind: 'bytes'; pos: number; data: Uint8Array; nearField: boolean }
  | { kind: 'resize'; fraction: number; grow: boolean };

const interesting = fc.oneof(
  fc.constantFrom(0n, 1n, 2n, 7n, 8n, 9n, 0x7fn, 0x80n, 0xffn, 0x7fffn, 0xffffn, 0x7fffffffn, 0x80000000n, 0xffffffffn,
    0x100000000n, 0x7fffffffffffffffn, 0xffffffffffffffffn, 512n, 4096n, 65536n, 1n << 53n),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
);

// Resizing destroys most structure at once, so it is rarer than in-place edits.
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('flip' as const), pos: fc.nat(), bit: fc.integer({ min: 0, max: 7 }), nearField: fc.boolean() }) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('field' as const), field: fc.nat(), value: interesting,
      width: fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const), le: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('bytes' as const), pos: fc.nat(), data: fc.uint8Array({ minLength: 1, maxLength: 32 }), nearField: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('resize' as const), fraction: fc.double({ min: 0, max: 1, noNaN: true }), grow: fc.boolean() }) },
);

/** Pick an absolute offset inside the seed: near a known field, or anywhere in its data. */
function locate(seed: Seed, pos: number, nearField: boolean): number {
  if (nearField && seed.fields.length) return seed.fields[pos % seed.fields.length]! + ((pos >> 8) % 16);
  const total = seed.segments.reduce((n, s) => n + s.data.length, 0);
  if (total === 0) return pos % Math.max(1, seed.size);
  let p = pos % total;
  for (const s of seed.segments) {
    if (p < s.data.length) return s.offset + p;
    p -= s.data.length;
  }
  return 0;
}

async function apply(seed: Seed, muts: Mutation[]): Promise<SparseReader> {
  let size = seed.size;
  const patches: Segment[] = [];
  for (const m of muts) {
    if (m.kind === 'resize') {
      size = m.grow ? size + Math.floor(m.fraction * 1024 * 1024) : Math.floor(size * m.fraction);
      continue;
    }
    if (m.kind === 'flip') {
      const at = locate(seed, m.pos, m.nearField);
      const cur = await new SparseReader(seed.size, seed.segments, patches).read(at, 1);
      patches.push({ offset: at, data: Buffer.from([(cur[0] ?? 0) ^ (1 << m.bit)]) });
    } else if (m.kind === 'bytes') {
      patches.push({ offset: locate(seed, m.pos, m.nearField), data: Buffer.from(m.data) });
    } else {
      const b = Buffer.alloc(8);
      const v = m.value & ((1n << BigInt(m.width * 8)) - 1n);
      if (m.le) b.writeBigUInt64LE(v);
      else b.writeBigUInt64BE(v << BigInt(64 - m.width * 8));
      const at = seed.fields.length ? seed.fields[m.field % seed.fields.length]! : 0;
      patches.push({ offset: at, data: b.subarray(0, m.width) });
    }
  }
  return new SparseReader(size, seed.segments, patches);
}

function checkReport(r: FormatReport): void {
  if (!FORMATS.has(r.format)) throw new Error(`bad format ${r.format}`);
  if (r.bytesRead > READ_BUDGET) throw new Error(`read ${r.bytesRead} bytes`);
  if (r.virtualSize !== null && !(r.virtualSize >= 0)) throw new Error(`bad virtual size ${r.virtualSize}`);
  for (const f of r.findings) {
    if (!(f.code in FINDING_CODES) || (f.severity !== 'info' && f.severity !== 'refuse') || f.message.length < 10) {
      throw new Error(`bad finding ${JSON.stringify(f)}`);
    }
  }
  for (const declared of [null, 'raw', r.format]) {
    const v = judge(r, declared, { maxVirtualSize: 2 ** 40, allowEncrypted: false });
    if (!v.ok && !(v.code in FINDING_CODES) && !(v.code in VERDICT_CODES)) throw new Error(`unknown verdict code ${v.code}`);
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`detectFormat took over ${ms} ms`)), ms); });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

export interface FuzzStats { runs: number; formats: Record<string, number>; refusals: Record<string, number>; maxBytesRead: number; maxMs: number }

let cachedSeeds: Promise<Seed[]> | null = null;

/** Run `numRuns` mutated inputs (spread over all seeds). Throws with a counterexample on failure. */
export async function runFormatFuzz(numRuns: number, opts: { seed?: number; seeds?: Seed[] } = {}): Promise<FuzzStats> {
  const seeds = opts.seeds ?? await (cachedSeeds ??= buildSeeds());
  const stats: FuzzStats = { runs: 0, formats: {}, refusals: {}, maxBytesRead: 0, maxMs: 0 };
  await fc.assert(
    fc.asyncProperty(fc.nat({ max: seeds.length - 1 }), fc.array(mutation, { minLength: 0, maxLength: 8 }), async (si, muts) => {
      const seed = seeds[si]!;
      const reader = await apply(seed, muts);
      const t0 = performance.now();
      const r = await withTimeout(detectFormat(reader), CALL_LIMIT_MS);
      const ms = performance.now() - t0;
      if (ms > CALL_LIMIT_MS) throw new Error(`detectFormat took ${ms} ms`);
      checkReport(r);
      stats.runs++;
      for (const f of [r.format, ...r.alsoMatches]) stats.formats[f] = (stats.formats[f] ?? 0) + 1;
      const v = judge(r, r.format, { maxVirtualSize: 2 ** 40, allowEncrypted: false });
      if (!v.ok) stats.refusals[v.code] = (stats.refusals[v.code] ?? 0) + 1;
      stats.maxBytesRead = Math.max(stats.maxBytesRead, r.bytesRead);
      stats.maxMs = Math.max(stats.maxMs, ms);
    }),
    { numRuns, seed: opts.seed, endOnFailure: true },
  );
  return stats;
}
