/** Property tests: whatever bytes an attacker sends, unpack's parsers refuse cleanly or succeed — no other error, no hang. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import zlib from 'node:zlib';
import fc from 'fast-check';
import { decompress } from '../../../workers/unpack/decompress.js';
import { UnpackRefusedError } from '../../../workers/unpack/errors.js';
import { extractOva } from '../../../workers/unpack/ova.js';
import { parseXml, XmlError } from '../../../workers/unpack/xml.js';
import { chunksOf, collect, makeOva, makeOvf } from './helpers.js';

const limits = { maxOutputBytes: 64 * 1024 * 1024, maxRatio: 1000 };

const mutations = (length: number) =>
  fc.array(
    fc.record({
      // half of the edits land in the first headers and the descriptor, where the parsing happens
      at: fc.oneof(fc.nat({ max: length - 1 }), fc.nat({ max: Math.min(length - 1, 2047) })),
      value: fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0, 0x2f, 0x2e, 0x30, 0x37, 0x80, 0xff)),
    }),
    { minLength: 1, maxLength: 8 },
  );

function mutate(base: Buffer, edits: { at: number; value: number }[], cut: number | null): Buffer {
  const out = Buffer.from(base);
  for (const e of edits) out[e.at] = e.value;
  return cut === null ? out : out.subarray(0, cut);
}

test('mutated OVAs: extractOva succeeds or throws UnpackRefusedError', async () => {
  const disk = Buffer.alloc(3000, 0x42);
  const ova = makeOva({
    ovf: makeOvf({ disks: [{ href: 'disk.vmdk', size: disk.length }], osId: 94, cpus: 2, memory: { quantity: 1024 } }),
    manifest: 'auto',
    files: { 'disk.vmdk': disk },
  });
  const gzDisk = zlib.gzipSync(disk);
  const ovaGz = makeOva({ ovf: makeOvf({ disks: [{ href: 'disk.vmdk', compression: 'gzip' }] }), files: { 'disk.vmdk': gzDisk } });
  for (const base of [ova, ovaGz]) {
    await fc.assert(
      fc.asyncProperty(mutations(base.length), fc.option(fc.nat({ max: base.length }), { nil: null }), fc.boolean(), async (edits, cut, knownSize) => {
        const input = mutate(base, edits, cut);
        try {
          await extractOva(chunksOf(input, 700), async (data) => void (await collect(data)), {
            limits,
            inputBytes: () => input.length,
            ...(knownSize ? { totalSize: input.length } : {}),
          });
        } catch (error) {
          if (!(error instanceof UnpackRefusedError)) throw error;
        }
      }),
      { numRuns: 400 },
    );
  }
});

test('mutated gzip streams: decompress succeeds or throws UnpackRefusedError', async () => {
  const base = zlib.gzipSync(Buffer.from('disk image bytes '.repeat(4000)));
  await fc.assert(
    fc.asyncProperty(mutations(base.length), fc.option(fc.nat({ max: base.length }), { nil: null }), async (edits, cut) => {
      try {
        await collect(decompress(chunksOf(mutate(base, edits, cut), 1000), 'gzip', limits));
      } catch (error) {
        if (!(error instanceof UnpackRefusedError)) throw error;
      }
    }),
    { numRuns: 300 },
  );
});

test('arbitrary text: the XML parser returns a tree or throws XmlError', () => {
  const xmlish = fc.array(fc.constantFrom('<', '>', '/', '</a>', '<a>', '<a ', 'b="', '"', "'", '&', '&amp;', '&#x', ';', '<!--', '-->', '<![CDATA[', ']]>', '<?', '?>', '<!DOCTYPE', 'x', ' ', ':', 'xmlns:p="u"', 'p:', '=', '\u0000', '\uD800'), { maxLength: 40 });
  fc.assert(
    fc.property(fc.oneof(fc.string({ maxLength: 200 }), xmlish.map((a) => a.join(''))), (text) => {
      try {
        parseXml(text);
      } catch (error) {
        assert.ok(error instanceof XmlError, String(error));
      }
    }),
    { numRuns: 3000 },
  );
});
