/**
 * The e2e upload matrix: raw, qcow2 and gzip-compressed qcow2 images made with qemu-img, each
 * with what PIR must report for it once active (digests of the stored bytes, qemu-img's virtual size).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { convertImage, qemuInfo } from '../support/images.js';
import { fileDigests, type PirClient } from '../support/pir-client.js';
import { waitFor } from '../support/pir-process.js';

export interface Fixture {
  label: string;
  path: string;
  disk_format: 'raw' | 'qcow2';
  container_format: 'bare' | 'compressed';
  /** What the store must hold: the file itself, or the uncompressed disk. */
  expected: { size: number; md5: string; sha512: string; virtualSize: number };
}

/** A sparse raw disk with random data in a few places, so that every image of the matrix differs. */
async function makeRaw(path: string, megabytes: number): Promise<void> {
  const handle = await open(path, 'w');
  try {
    await handle.truncate(megabytes * 2 ** 20);
    for (let i = 0; i < 4; i++) await handle.write(randomBytes(65536), 0, 65536, (i * 7 + 1) * 65536);
  } finally {
    await handle.close();
  }
}

async function gzipFile(from: string, to: string): Promise<void> {
  await pipeline(createReadStream(from), createGzip({ level: 1 }), createWriteStream(to));
}

export async function buildMatrix(dir: string, count: number): Promise<Fixture[]> {
  const fixtures: Fixture[] = [];
  for (let i = 0; i < count; i++) {
    const kind = (['raw', 'qcow2', 'qcow2.gz'] as const)[i % 3];
    const raw = join(dir, `disk-${i}.raw`);
    await makeRaw(raw, 4 + (i % 5));
    if (kind === 'raw') {
      const digests = await fileDigests(raw);
      fixtures.push({ label: `raw #${i}`, path: raw, disk_format: 'raw', container_format: 'bare', expected: { ...digests, virtualSize: (await qemuInfo(raw, 'raw'))['virtual-size'] } });
      continue;
    }
    const qcow2 = await convertImage(raw, join(dir, `disk-${i}.qcow2`), 'qcow2');
    const digests = await fileDigests(qcow2);
    const virtualSize = (await qemuInfo(qcow2, 'qcow2'))['virtual-size'];
    if (kind === 'qcow2') {
      fixtures.push({ label: `qcow2 #${i}`, path: qcow2, disk_format: 'qcow2', container_format: 'bare', expected: { ...digests, virtualSize } });
    } else {
      const gz = `${qcow2}.gz`;
      await gzipFile(qcow2, gz);
      fixtures.push({ label: `qcow2.gz #${i}`, path: gz, disk_format: 'qcow2', container_format: 'compressed', expected: { ...digests, virtualSize } });
    }
  }
  return fixtures;
}

/**
 * 1 GiB of zeros, gzip'd to ~1 MiB: an image whose unpack stage takes seconds, long enough to
 * kill or stop a process in the middle of it. Needs PIR_MAX_EXPANSION_RATIO above ~1030.
 */
export function makeSlowGzip(dir: string): string {
  const gz = join(dir, 'zeros.raw.gz');
  if (existsSync(gz)) return gz; // made by an earlier test of the suite
  execFileSync('bash', ['-c', `head -c ${2 ** 30} /dev/zero | gzip -1 > '${gz}.part' && mv '${gz}.part' '${gz}'`]);
  return gz;
}

export const SLOW_GZIP_SIZE = 2 ** 30;
export const SLOW_GZIP_ENV = { PIR_MAX_EXPANSION_RATIO: '1000000' };

/**
 * Waits (bounded) until no staging file of `imageId` (or none at all) is left: the process that
 * ends a pipeline removes them right after the manifest write that other processes already see.
 */
export async function waitForEmptyStaging(dataDir: string, imageId?: string): Promise<void> {
  const left = async () => (await readdir(join(dataDir, 'staging'))).filter((n) => imageId === undefined || n.startsWith(imageId));
  await waitFor(async () => (await left()).length === 0, 10_000, 'staging emptied').catch(async (error: Error) => {
    throw new Error(`${error.message}; still there: ${(await left()).join(', ')}`);
  });
}

/** Checks an active image against its fixture: manifest fields and the downloaded bytes. */
export async function assertActiveAsExpected(client: PirClient, id: string, fixture: Fixture): Promise<void> {
  const { body: image } = await client.getImage(id);
  assert.equal(image.status, 'active', `${fixture.label}: ${JSON.stringify(image.pir_failure)}`);
  assert.equal(image.size, fixture.expected.size, `${fixture.label}: size`);
  assert.equal(image.checksum, fixture.expected.md5, `${fixture.label}: checksum`);
  assert.equal(image.os_hash_algo, 'sha512');
  assert.equal(image.os_hash_value, fixture.expected.sha512, `${fixture.label}: os_hash_value`);
  assert.equal(image.virtual_size, fixture.expected.virtualSize, `${fixture.label}: virtual_size vs qemu-img info`);
  const downloaded = await client.downloadDigests(id);
  assert.deepEqual({ size: downloaded.size, md5: downloaded.md5, sha512: downloaded.sha512 }, { size: fixture.expected.size, md5: fixture.expected.md5, sha512: fixture.expected.sha512 });
  assert.equal(downloaded.contentMd5, fixture.expected.md5);
  for (const stage of ['unpack', 'inspect', 'checksum', 'promote']) {
    assert.equal(image.pir_pipeline.stages[stage].status, 'done', `${fixture.label}: ${stage}`);
    assert.equal(typeof image.pir_pipeline.stages[stage].duration_ms, 'number');
  }
}
