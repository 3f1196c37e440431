import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { stageLine } from '../../../cli/follow.js';
import { humanBytes, humanDuration, parseFormat, printList, printRecord, printable, table } from '../../../cli/output.js';
import type { Image } from '../../../client/index.js';

function capture(fn: (out: NodeJS.WritableStream) => void): string {
  let text = '';
  fn({ write: (c: string) => { text += c; return true; } } as unknown as NodeJS.WritableStream);
  return text;
}

describe('pir output', () => {
  it("shows other projects' text without its control characters: no escape sequence reaches the terminal", () => {
    assert.equal(printable('ubuntu\u001b]0;pwned\u0007 \u009b31m\tx'), 'ubuntu\\x1b]0;pwned\\x07 \\x9b31m\\x09x');
    const shown = capture((out) => printList([{ name: 'a\u001b[31mred' }], ['name'], 'table', out));
    assert.ok(!shown.includes('\u001b'), shown);
    assert.match(shown, /a\\x1b\[31mred/);
  });

  it('aligns tables and prints json and yaml that parse back', () => {
    assert.equal(table(['a', 'bb'], [['xyz', '1'], ['', '22']]), 'a    bb\n---  --\nxyz  1\n     22\n');
    const records = [{ id: '1', name: 'n', size: 3, tags: ['t'] }];
    assert.deepEqual(JSON.parse(capture((o) => printList(records, ['id'], 'json', o))), records);
    assert.deepEqual(parse(capture((o) => printList(records, ['id'], 'yaml', o))), records);
    assert.equal(capture((o) => printRecord({ b: null, a: { x: 1 } }, 'table', o)), 'property  value\n--------  -------\na         {"x":1}\nb\n');
    assert.throws(() => parseFormat('xml'), /--format must be one of table, json, yaml/);
  });

  it('writes sizes and durations for people', () => {
    assert.equal(humanBytes(512), '512 B');
    assert.equal(humanBytes(2 * 2 ** 30), '2.0 GiB');
    assert.equal(humanDuration(75), '1m15s');
    assert.equal(humanDuration(3 * 3600 + 120), '3h02m');
  });

  it('writes the stage line in pipeline order, with the outcome', () => {
    const image = {
      status: 'killed',
      pir_pipeline: { run: 1, method: 'upload', stage: 'inspect', findings: [], stages: {
        inspect: { status: 'failed', duration_ms: null }, unpack: { status: 'done', duration_ms: 12 },
        checksum: { status: 'pending' }, promote: { status: 'pending' },
      } },
    } as unknown as Image;
    assert.equal(stageLine(image, false), 'unpack ✓ 12 ms · inspect ✗ → killed');
    const running = { ...image, status: 'importing', pir_pipeline: { ...image.pir_pipeline!, stages: { unpack: { status: 'done', duration_ms: 1 }, inspect: { status: 'running' } } } } as unknown as Image;
    assert.equal(stageLine(running, true), 'unpack ✓ 1 ms · inspect …');
    assert.equal(stageLine(running, false), 'unpack ✓ 1 ms');
  });
});

describe('pir image update', () => {
  it('builds a JSON patch: replace what exists, add what does not, remove, escape pointers', async () => {
    const { buildPatch } = await import('../../../cli/image-commands.js');
    const current = { name: 'old', os_distro: 'debian', visibility: 'private', protected: false, missing: null, 'gone~1': 'y' };
    assert.deepEqual(buildPatch(current, { name: 'new', property: ['os_distro=ubuntu', 'a/b=1', 'missing=x', 'eq=a=b'], removeProperty: ['gone~1'], visibility: 'public', protected: true }), [
      { op: 'replace', path: '/name', value: 'new' },
      { op: 'replace', path: '/os_distro', value: 'ubuntu' },
      { op: 'add', path: '/a~1b', value: '1' },
      { op: 'add', path: '/missing', value: 'x' },
      { op: 'add', path: '/eq', value: 'a=b' },
      { op: 'remove', path: '/gone~01' },
      { op: 'replace', path: '/visibility', value: 'public' },
      { op: 'replace', path: '/protected', value: true },
    ]);
    assert.deepEqual(buildPatch(current, { property: [], removeProperty: [], unprotected: true }), [{ op: 'replace', path: '/protected', value: false }]);
    assert.throws(() => buildPatch(current, { property: ['novalue'], removeProperty: [] }), /--property takes key=value/);
  });
});
