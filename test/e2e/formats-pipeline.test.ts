/**
 * Every disk format, and every hostile image, through the whole pipeline of a real `pir serve`
 * (upload → unpack → inspect → checksum → promote): each ends active with qemu-img info's virtual
 * size and the stored bytes' digests, or killed with the right stage, code and message, leaving
 * nothing in the store. One server for the file; uploads run concurrently.
 */
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { errorSpec } from '../../core/error-catalog.js';
import { ensureQemuImg, makeTempDir, removeDir } from '../support/images.js';
import { PirClient } from '../support/pir-client.js';
import { freePort, startPirProcess, testLogDir, type PirProcess } from '../support/pir-process.js';
import { waitForEmptyStaging } from './upload-matrix.js';
import {
  buildCompressedFixtures, buildGoodFixtures, buildGoodOva, buildHostileFixtures, buildMostlyEmptyFixtures, LIMITS, MiB,
  type ActiveExpectation, type Fixture, type KilledExpectation,
} from './hostile-images.js';

const TOKEN = 'e2e-formats-token-0123456789abcdef';
const STAGES = ['unpack', 'inspect', 'checksum', 'promote'] as const;

describe('formats through the whole pipeline (pir serve)', () => {
  let dir: string;
  let dataDir: string;
  let pir: PirProcess | undefined;
  let client: PirClient;
  let good: Fixture[];
  let compressed: Fixture[];
  let ova: Fixture;
  let hostile: Fixture[];
  /** Image ids that ended active (the only files the store may hold). */
  const activeIds = new Set<string>();

  before(async () => {
    ensureQemuImg();
    dir = await makeTempDir('pir-e2e-formats-');
    dataDir = join(dir, 'data');
    const port = await freePort();
    const started = startPirProcess('serve', {
      PIR_DATA_DIR: dataDir,
      PIR_PORT: String(port),
      PIR_ADMIN_TOKEN: TOKEN,
      PIR_MAX_VIRTUAL_SIZE: `${LIMITS.maxVirtualSize / 2 ** 40}TiB`,
      PIR_MAX_UNPACKED_SIZE: `${LIMITS.maxUnpackedSize / MiB}MiB`,
      PIR_MAX_EXPANSION_RATIO: String(LIMITS.maxExpansionRatio),
      PIR_UNPACK_RATIO_FLOOR: `${LIMITS.unpackRatioFloor / MiB}MiB`,
    }, testLogDir('formats-pipeline'), `serve-${port}`);
    const fixtures = dir;
    const built = (async () => {
      const g = await buildGoodFixtures(fixtures);
      const [c, e, o, h] = await Promise.all([buildCompressedFixtures(fixtures, g.qcow2), buildMostlyEmptyFixtures(fixtures), buildGoodOva(fixtures, g.streamVmdk), buildHostileFixtures(fixtures, g.streamVmdk, g.qcow2)]);
      return { g: g.fixtures, c: [...c, ...e], o, h };
    })();
    const [server, sets] = await Promise.allSettled([started, built]);
    if (server.status === 'fulfilled') pir = server.value;
    if (server.status === 'rejected') throw server.reason;
    if (sets.status === 'rejected') throw sets.reason;
    ({ g: good, c: compressed, o: ova, h: hostile } = sets.value);
    client = new PirClient(`http://127.0.0.1:${port}`, TOKEN);
  });

  after(async () => {
    await pir?.stop();
    if (dir) await removeDir(dir);
  });

  async function stored(): Promise<string[]> {
    return (await readdir(join(dataDir, 'images'))).filter((n) => !n.startsWith('.'));
  }

  /** Uploads a fixture and checks it is active, as qemu-img and the file's own digests say. */
  async function expectActive(f: Fixture): Promise<void> {
    const e = f.expect as ActiveExpectation;
    const created = await client.createImage({ name: f.label, disk_format: f.disk_format, container_format: f.container_format });
    assert.equal(created.status, 'queued');
    const response = await client.putData(created.id, f.path);
    assert.equal(response.status, 204, `${f.label}: ${JSON.stringify(response.body)}`);
    const { body: image } = await client.getImage(created.id);
    assert.equal(image.status, 'active', JSON.stringify(image.pir_failure));
    activeIds.add(created.id);

    // The format as qemu-img sees it, and the virtual size PIR found in the header.
    assert.equal(e.qemu.probed, e.qemu.probedAs, 'qemu-img info probes the file as expected');
    assert.equal(image.virtual_size, e.virtualSize, 'virtual_size');
    if (e.qemu.note) assert.equal(e.qemu.virtualSize, Math.ceil(e.virtualSize / 512) * 512, e.qemu.note);
    else assert.equal(image.virtual_size, e.qemu.virtualSize, 'virtual_size equals qemu-img info');

    // Checksums describe the stored bytes; the download is those bytes.
    assert.deepEqual(
      { size: image.size, checksum: image.checksum, os_hash_algo: image.os_hash_algo, os_hash_value: image.os_hash_value },
      { size: e.size, checksum: e.md5, os_hash_algo: 'sha512', os_hash_value: e.sha512 },
    );
    const downloaded = await client.downloadDigests(created.id);
    assert.deepEqual({ size: downloaded.size, md5: downloaded.md5, sha512: downloaded.sha512 }, { size: e.size, md5: e.md5, sha512: e.sha512 });
    assert.equal(downloaded.contentMd5, e.md5);

    assert.equal(image.pir_uploaded_sha512, e.uploadedSha512, 'pir_uploaded_sha512 is set only when the stored disk is not the upload');
    for (const [key, value] of Object.entries(e.properties ?? {})) assert.equal(image[key], value, `property ${key}`);
    for (const stage of STAGES) assert.equal(image.pir_pipeline.stages[stage].status, 'done', stage);
    assert.ok(!image.pir_pipeline.findings.some((x: { severity: string }) => x.severity === 'refuse'));
    assert.ok((await stored()).includes(created.id), 'the image is in the store');
  }

  /** Uploads a fixture and checks it is refused at the right stage, with the right reason, and not stored. */
  async function expectKilled(f: Fixture): Promise<void> {
    const e = f.expect as KilledExpectation;
    const created = await client.createImage({ name: f.label, disk_format: f.disk_format, container_format: f.container_format });
    const started = Date.now();
    const response = await client.putData(created.id, f.path);
    // 415 for the inspectors' refusals (as Glance), 400 for unpack's (the catalog's unit test pins which).
    const status = errorSpec(e.code)!.status;
    assert.equal(response.status, status, `${f.label}: ${response.status} ${JSON.stringify(response.body)}`);
    if (e.withinSeconds) assert.ok(Date.now() - started < e.withinSeconds * 1000, `refused after ${Date.now() - started} ms`);
    const error = response.body.error;
    assert.deepEqual({ code: error.code, error_code: error.error_code }, { code: status, error_code: e.code }, error.message);
    assert.match(error.message, e.message);
    assert.match(error.message, new RegExp(`at the ${e.stage} stage`));

    const { body: image } = await client.getImage(created.id);
    assert.equal(image.status, 'killed');
    assert.deepEqual({ stage: image.pir_failure.stage, code: image.pir_failure.code }, { stage: e.stage, code: e.code });
    assert.match(image.pir_failure.message, e.message);
    // Nothing about the refused bytes is advertised, and nothing can be downloaded.
    assert.deepEqual({ checksum: image.checksum, os_hash_value: image.os_hash_value, virtual_size: image.virtual_size }, { checksum: null, os_hash_value: null, virtual_size: null });
    for (const stage of STAGES.slice(STAGES.indexOf(e.stage) + 1)) assert.notEqual(image.pir_pipeline.stages[stage].status, 'done', `${stage} must not have run`);
    const download = await fetch(`${client.baseUrl}/v2/images/${created.id}/file`, { headers: { 'x-auth-token': TOKEN } });
    assert.equal(download.status, 204);
    assert.ok(!(await stored()).some((n) => n.startsWith(created.id)), 'nothing in the store');
  }

  /** Runs one subtest per fixture, all at once. */
  async function each(t: TestContext, fixtures: Fixture[], check: (f: Fixture) => Promise<void>): Promise<void> {
    await Promise.all(fixtures.map((f) => t.test(`${f.label} → ${describeExpectation(f)}`, () => check(f))));
  }

  it('takes an image of every format to active with qemu-img info\'s virtual size and the stored bytes\' digests', { concurrency: true }, async (t) => {
    await each(t, good, expectActive);
  });

  it('unpacks gzip, xz, zstd and bzip2-compressed qcow2, and mostly-empty raw disks as gzip, xz, zstd, multi-member gzip and zip (container_format compressed)', { concurrency: true }, async (t) => {
    await each(t, compressed, expectActive);
  });

  it('extracts the disk of an OVA, with properties from its OVF descriptor', async () => {
    await expectActive(ova);
  });

  it('refuses every hostile image with the right reason, and stores none of them', { concurrency: true }, async (t) => {
    await each(t, hostile, expectKilled);
  });

  it('leaves staging empty and the store holding exactly the active images', async () => {
    await waitForEmptyStaging(dataDir);
    assert.deepEqual((await stored()).sort(), [...activeIds].sort());
    assert.equal(activeIds.size, good.length + compressed.length + 1);
  });
});

function describeExpectation(f: Fixture): string {
  const e = f.expect;
  const declared = `${f.disk_format}/${f.container_format}`;
  return e.status === 'active' ? `${declared}: active` : `${declared}: killed at ${e.stage} (${e.code})`;
}
