/**
 * qcow2 metadata overlaps (formats/qcow2-overlaps.ts): images made by qemu-img, then one pointer
 * edited so that two structures share a cluster. Each edit is refused, and `qemu-img check`
 * agrees that the image is corrupt; clean images, with internal snapshots and compressed
 * clusters, stay accepted.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFile, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { convertImage, ensureQemuImg, makeTempDir, patchFile, removeDir } from '../../support/images.js';
import { assertAccepted, assertRefused, detectFile } from './helpers.js';

const MiB = 1024 * 1024;

interface Layout {
  clusterSize: number;
  l1Offset: number;
  refcountOffset: number;
  firstRefcountBlock: number;
  firstL2: number;
  /** Byte offset in the file of the first L2 entry that maps a data cluster. */
  firstDataEntryAt: number;
}

async function layoutOf(path: string): Promise<Layout> {
  const img = await readFile(path);
  const clusterSize = 2 ** img.readUInt32BE(20);
  const l1Offset = Number(img.readBigUInt64BE(40));
  const refcountOffset = Number(img.readBigUInt64BE(48));
  const firstRefcountBlock = Number(img.readBigUInt64BE(refcountOffset) & 0xfffffffffffffe00n);
  const firstL2 = Number(img.readBigUInt64BE(l1Offset) & 0x00fffffffffffe00n);
  let firstDataEntryAt = -1;
  for (let at = firstL2; at < firstL2 + clusterSize; at += 8) {
    if ((img.readBigUInt64BE(at) & 0x00fffffffffffe00n) !== 0n) {
      firstDataEntryAt = at;
      break;
    }
  }
  assert.ok(firstL2 > 0 && firstDataEntryAt > 0, 'the source image maps data through its first L2 table');
  return { clusterSize, l1Offset, refcountOffset, firstRefcountBlock, firstL2, firstDataEntryAt };
}

/** Overwrites a u64 pointer, keeping the flag bits qemu set (COPIED and the like). */
async function pointAt(path: string, at: number, target: number): Promise<void> {
  const fh = await open(path, 'r');
  const b = Buffer.alloc(8);
  try {
    await fh.read(b, 0, 8, at);
  } finally {
    await fh.close();
  }
  const flags = b.readBigUInt64BE(0) & ~0x00fffffffffffe00n;
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(flags | BigInt(target));
  await patchFile(path, at, out);
}

describe('qcow2 metadata that shares a cluster is refused', () => {
  let dir = '';
  let clean = '';
  let layout: Layout;
  before(async () => {
    ensureQemuImg();
    dir = await makeTempDir('pir-qcow2-overlap-');
    const raw = join(dir, 'source.raw');
    const fh = await open(raw, 'w');
    try {
      await fh.truncate(64 * MiB);
      for (const at of [0, 5, 33]) await fh.write(Buffer.alloc(128 * 1024, 0x5a + at), 0, 128 * 1024, at * MiB);
    } finally {
      await fh.close();
    }
    clean = await convertImage(raw, join(dir, 'clean.qcow2'), 'qcow2');
    layout = await layoutOf(clean);
  });
  after(() => removeDir(dir));

  async function edited(name: string, edit: (path: string) => Promise<void>): Promise<string> {
    const path = join(dir, `${name}.qcow2`);
    await copyFile(clean, path);
    await edit(path);
    return path;
  }

  const cases: Array<[string, RegExp, (path: string) => Promise<void>]> = [
    ['the L1 table moved onto the refcount table', /the (L1|refcount) table at offset \d+ lies in a cluster of the (refcount|L1) table/,
      (p) => pointAt(p, 40, layout.refcountOffset)],
    ['the L1 table moved onto the header', /the L1 table at offset 0 lies in a cluster of the header/,
      (p) => pointAt(p, 40, 0)],
    ['an L2 table pointer aimed at a refcount block', /the L2 table \(L1 entry 0\) at offset \d+ lies in a cluster of the refcount block/,
      (p) => pointAt(p, layout.l1Offset, layout.firstRefcountBlock)],
    ['a data cluster aimed at the L1 table', /the data cluster \(L2 table at \d+, entry \d+\) at offset \d+ lies in a cluster of the L1 table/,
      (p) => pointAt(p, layout.firstDataEntryAt, layout.l1Offset)],
    ['a data cluster aimed at its own L2 table', /the data cluster .* lies in a cluster of the L2 table/,
      (p) => pointAt(p, layout.firstDataEntryAt, layout.firstL2)],
    ['a data cluster aimed at the refcount table', /the data cluster .* lies in a cluster of the refcount table/,
      (p) => pointAt(p, layout.firstDataEntryAt, layout.refcountOffset)],
  ];
  for (const [label, message, edit] of cases) {
    it(label, async () => {
      const path = await edited(label.replace(/\W+/g, '-'), edit);
      const v = assertRefused(await detectFile(path), 'qcow2', 'corrupt_header');
      assert.match(v.ok ? '' : v.message, message);
      assert.match(v.ok ? '' : v.message, /qemu-img check -r all/);
      // qemu-img check agrees: 2 = corruptions found, 3 = leaks only does not count
      const check = spawnSync('qemu-img', ['check', '-f', 'qcow2', path], { encoding: 'utf8' });
      assert.ok(check.status === 2 || check.status === 1, `qemu-img check of '${label}' exited ${check.status}: ${check.stdout}${check.stderr}`);
    });
  }

  it('accepts clean images: plain, compressed, and with internal snapshots over rewritten data', async () => {
    assertAccepted(await detectFile(clean), 'qcow2');
    const compressed = join(dir, 'compressed.qcow2');
    execFileSync('qemu-img', ['convert', '-q', '-c', '-O', 'qcow2', join(dir, 'source.raw'), compressed]);
    assertAccepted(await detectFile(compressed), 'qcow2');
    const snapshotted = join(dir, 'snapshotted.qcow2');
    await copyFile(clean, snapshotted);
    execFileSync('qemu-img', ['snapshot', '-c', 'one', snapshotted]);
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x11 0 256k', '-c', 'write -P 0x22 40M 64k', snapshotted], { stdio: 'ignore' });
    execFileSync('qemu-img', ['snapshot', '-c', 'two', snapshotted]);
    assert.equal(spawnSync('qemu-img', ['check', snapshotted]).status, 0);
    assertAccepted(await detectFile(snapshotted), 'qcow2');
  });
});
