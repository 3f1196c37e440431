// Safe disk-image format detection and inspection (Glance-compatible semantics).
export type {
  DetectedFormat, Finding, FormatReport, RandomAccessReader, Verdict, VerdictPolicy,
} from './types.js';
export { detectFormat } from './detect.js';
export { emptyImageRefusal, judge } from './judge.js';
export { BufferReader } from './buffer-reader.js';
export { CountingReader } from './counting-reader.js';
export { READ_BUDGET } from './read-context.js';
export type { BlockCache } from './read-context.js';
export { FINDING_CODES, VERDICT_CODES } from './codes.js';
export type { FindingCode, VerdictCode } from './codes.js';
