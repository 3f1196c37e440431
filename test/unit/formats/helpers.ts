// Shared helpers for the format unit tests.
import assert from 'node:assert/strict';
import { BufferReader, detectFormat, FINDING_CODES, judge, VERDICT_CODES } from '../../../formats/index.js';
import type { FormatReport, Verdict, VerdictPolicy } from '../../../formats/index.js';
import { withFileReader } from '../../support/images.js';

export const GiB = 1024 ** 3;
export const POLICY: VerdictPolicy = { maxVirtualSize: 1024 * GiB, allowEncrypted: false };

export async function detectFile(path: string): Promise<FormatReport> {
  return withFileReader(path, (r) => detectFormat(r));
}

export async function detectBuf(buf: Buffer): Promise<FormatReport> {
  return detectFormat(new BufferReader(buf));
}

export function codes(report: FormatReport, severity?: 'info' | 'refuse'): string[] {
  return report.findings.filter((f) => !severity || f.severity === severity).map((f) => f.code);
}

/** Assert the report is refused by judge with the given code (for the given declaration). */
export function assertRefused(report: FormatReport, declared: string | null, code: string, policy = POLICY): Verdict {
  const v = judge(report, declared, policy);
  assert.equal(v.ok, false, `expected refusal ${code}, got ok: ${JSON.stringify(report)}`);
  if (!v.ok) {
    assert.equal(v.code, code, `expected ${code}, got ${v.code}: ${v.message}`);
    assert.ok(v.message.length > 20, 'message should be a sentence');
    assert.ok(v.code in FINDING_CODES || v.code in VERDICT_CODES, `undocumented code ${v.code}`);
  }
  return v;
}

export function assertAccepted(report: FormatReport, declared: string | null, policy = POLICY): Verdict {
  const v = judge(report, declared, policy);
  assert.equal(v.ok, true, `expected ok, got ${JSON.stringify(v)}`);
  return v;
}
