/**
 * The error catalog, the code and README's error table agree (as fastify's
 * test/internals/errors.test.js): every code the source raises is declared with the status its
 * raising helper implies, every declared code is raised somewhere, and README lists each one
 * with the same status and class.
 */
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { API_ERRORS, ERROR_CATALOG, PIPELINE_ERRORS, errorSpec } from '../../../core/error-catalog.js';
import { FINDING_CODES, VERDICT_CODES } from '../../../formats/codes.js';
import type { EgressRefusalCode } from '../../../infra/egress/egress-client.js';
import type { UnpackRefusalCode } from '../../../workers/unpack/errors.js';

const ROOT = new URL('../../../../', import.meta.url).pathname;
const SOURCE_DIRS = ['api', 'core', 'ingest', 'workers', 'infra', 'formats', 'cli', 'cache'];

async function sources(): Promise<{ path: string; text: string }[]> {
  const out: { path: string; text: string }[] = [];
  const walk = async (dir: string) => {
    for (const entry of await readdir(join(ROOT, dir), { withFileTypes: true })) {
      const rel = join(dir, entry.name);
      if (entry.isDirectory()) await walk(rel);
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push({ path: rel, text: await readFile(join(ROOT, rel), 'utf8') });
    }
  };
  for (const dir of SOURCE_DIRS) await walk(dir);
  return out;
}

/** The status a stage's refusal answers with. */
function refusalStatus(code: string | undefined): number {
  return code !== undefined && Object.hasOwn({ ...FINDING_CODES, ...VERDICT_CODES }, code) ? 415 : 400;
}

/** How each way of raising an error names its code, and the status it implies (null: any). */
const RAISERS: { pattern: RegExp; status: (m: RegExpExecArray) => number | null }[] = [
  { pattern: /(?<![.\w])fail\(\s*'([a-z_0-9]+)'/g, status: () => null },
  { pattern: /\bbadRequest\(\s*'([a-z_0-9]+)'/g, status: () => 400 },
  { pattern: /\bconflict\(\s*'([a-z_0-9]+)'/g, status: () => 409 },
  { pattern: /\bforbidden\(\s*'([a-z_0-9]+)'/g, status: () => 403 },
  { pattern: /\brequestTimeout\(\s*'([a-z_0-9]+)'/g, status: () => 408 },
  { pattern: /\binsufficientStorage\(\s*'([a-z_0-9]+)'/g, status: () => 507 },
  { pattern: /return \{ status: (\d{3}), code: '([a-z_0-9]+)'/g, status: (m) => Number(m[1]) }, // api/error-handler.ts's HTTP-parser errors
  { pattern: /kind: 'refused', status: (\d{3}), code: '([a-z_0-9]+)'/g, status: (m) => Number(m[1]) }, // api/byte-range.ts
  // A stage's refusal answers its catalog status: 415 for an inspector's code (as Glance), else 400.
  { pattern: /new RefusedError\(\s*'([a-z_0-9]+)'/g, status: (m) => refusalStatus(m[1]) },
  { pattern: /new TransientError\(\s*'([a-z_0-9]+)'/g, status: () => null },
  { pattern: /new UnpackRefusedError\(\s*'([a-z_0-9]+)'/g, status: (m) => refusalStatus(m[1]) },
  { pattern: /new PirError\(\s*'[a-z_]+',\s*'([a-z_0-9]+)'/g, status: () => null },
  { pattern: /sendError\(\s*reply,\s*(\d{3}),\s*'([a-z_0-9]+)'/g, status: (m) => Number(m[1]) },
  { pattern: /\bkill\(\s*draft,\s*[^,]+,\s*'([a-z_0-9]+)'/g, status: () => null },
  { pattern: /code: '([a-z_0-9]+)', message: \(/g, status: () => null }, // api/error-handler.ts's Fastify mapping
  { pattern: /return \{ code: '([a-z_0-9]+)'/g, status: () => null }, // ingest/web-download.ts's failure codes
  { pattern: /new GlanceDownloadError\(\s*'([a-z_0-9]+)'/g, status: () => null }, // ingest/glance-download.ts
  { pattern: /new LocationUnreadableError\(\s*'([a-z_0-9]+)'/g, status: () => null }, // infra/storage/location-reader.ts
  { pattern: /extends RefusedError \{[^}]*?super\(\s*'([a-z_0-9]+)'/gs, status: () => null }, // a refusal of its own class (LocationChangedError)
];

async function usedCodes(): Promise<Map<string, { status: number | null; where: string }[]>> {
  const used = new Map<string, { status: number | null; where: string }[]>();
  for (const { path, text } of await sources()) {
    if (path === join('core', 'error-catalog.ts')) continue;
    for (const { pattern, status } of RAISERS) {
      for (const m of text.matchAll(pattern)) {
        const code = m.length > 2 && /^\d{3}$/.test(m[1]) ? m[2] : m[1];
        used.set(code, [...(used.get(code) ?? []), { status: status(m as RegExpExecArray), where: path }]);
      }
    }
  }
  return used;
}

describe('the error catalog', () => {
  it('declares every code the source raises, with the status its helper implies', async () => {
    const used = await usedCodes();
    assert.ok(used.size > 40, `found only ${used.size} codes: the raisers' patterns are out of date`);
    for (const [code, uses] of used) {
      const spec = errorSpec(code);
      assert.ok(spec, `${code} (raised in ${uses.map((u) => u.where).join(', ')}) is not declared in core/error-catalog.ts`);
      for (const use of uses) if (use.status !== null) assert.equal(spec.status, use.status, `${code} in ${use.where}`);
    }
  });

  it("declares the egress client's codes (raised by name from EgressError: web-download refusals and failures)", () => {
    // A Record over the union type: the compiler makes this list complete.
    const egress: Record<EgressRefusalCode, string> = {
      uri_refused: 'uri_refused', address_refused: 'address_refused', dns_failed: 'dns_failed', too_many_redirects: 'too_many_redirects',
      upstream_status: 'upstream_status', too_large: 'image_too_large', timeout: 'timeout', connection_failed: 'connection_failed',
    };
    for (const code of Object.values(egress)) assert.ok(errorSpec(code), code);
  });

  it("declares unpack's refusal codes (a new one fails to compile here until it is listed)", () => {
    const unpack: Record<UnpackRefusalCode, true> = {
      decompressed_too_large: true, expansion_ratio: true, corrupt_archive: true, unsupported_archive: true, unsafe_archive: true,
      format_mismatch: true, not_an_ova: true, invalid_ovf: true, ovf_disk_missing: true, manifest_mismatch: true,
    };
    // format_mismatch is also the inspectors' code (a second compression layer is content not as declared): 415.
    for (const code of Object.keys(unpack)) assert.equal(errorSpec(code)?.status, code === 'format_mismatch' ? 415 : 400, code);
  });

  it('has no code that nothing raises', async () => {
    const used = await usedCodes();
    const declared = [...Object.keys(API_ERRORS), ...Object.keys(PIPELINE_ERRORS)];
    // Raised with a computed status or name: Fastify's validation (invalid_request), its other 4xx (bad_request), a stage's unexpected failure (internal_error), EgressError's codes.
    const byName = ['invalid_request', 'bad_request', 'internal_error', 'address_refused', 'dns_failed', 'too_many_redirects', 'upstream_status', 'timeout', 'connection_failed'];
    const unused = declared.filter((code) => !used.has(code) && !byName.includes(code));
    assert.deepEqual(unused, []);
  });

  it('classes 5xx as faults and 4xx as refusals', () => {
    for (const [code, spec] of Object.entries(ERROR_CATALOG)) {
      assert.equal(spec.class, spec.status >= 500 ? 'fault' : 'refusal', code);
      assert.ok(spec.meaning.length > 10, code);
    }
  });

  it("agrees with README's error table", async () => {
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('### Errors'));
    const rows = new Map<string, { status: number; cls: string }>();
    for (const m of section.matchAll(/^\| `([a-z_0-9]+)` \| (\d{3}) \| (refusal|fault) \|/gm)) rows.set(m[1], { status: Number(m[2]), cls: m[3] });
    const expected = { ...API_ERRORS, ...PIPELINE_ERRORS } as Record<string, { status: number; class: string }>;
    for (const [code, spec] of Object.entries(expected)) {
      assert.deepEqual(rows.get(code), { status: spec.status, cls: spec.class }, `README's error table row for ${code}`);
    }
    for (const code of rows.keys()) assert.ok(Object.hasOwn(expected, code), `README lists ${code}, which the catalog does not declare`);
    // README names the faults logged at warn (the catalog's `expected`), each and no other.
    const warned = /A 5xx fault is logged at error[^]*?are logged at warn\./.exec(section)?.[0] ?? '';
    assert.deepEqual([...warned.matchAll(/`([a-z_0-9]+)`/g)].map((m) => m[1]).filter((c) => c !== 'error_code').sort(),
      Object.entries(ERROR_CATALOG).filter(([, spec]) => spec.expected).map(([code]) => code).sort());
    // The inspectors' codes are listed once in formats/codes.ts; README points there and the catalog takes them all as 415 refusals (Glance's InvalidImageData).
    assert.match(section, /formats\/codes\.ts/);
    for (const code of Object.keys({ ...FINDING_CODES, ...VERDICT_CODES })) assert.equal(errorSpec(code)?.status, 415, code);
  });
});
