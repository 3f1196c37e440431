/** The pipeline shows what an image says of itself as pir_detected_* properties; the user's own value wins. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { mbrSector } from '../formats/craft.js';
import { testApp, type TestApp } from './tenant-app.js';

const MiB = 1024 * 1024;

describe('detected properties (pir_detected_*)', () => {
  let t: TestApp;
  let dir: string;
  let disk: Buffer;
  before(async () => {
    t = await testApp();
    dir = await mkdtemp(join(tmpdir(), 'pir-detected-'));
    const path = join(dir, 'disk.raw');
    await writeFile(path, Buffer.alloc(12 * MiB));
    execFileSync('mkfs.ext4', ['-q', '-F', '-L', 'rootfs', '-E', `offset=${MiB}`, path, '10M'], { stdio: 'ignore' });
    disk = await readFile(path);
    mbrSector([{ status: 0x80, type: 0x83, lba: 2048, sectors: 20480 }], disk.subarray(0, 512));
  });
  after(async () => { await t.close(); await rm(dir, { recursive: true, force: true }); });

  const upload = async (id: string) => {
    const res = await t.call('a-member', 'PUT', `/v2/images/${id}/file`, disk, { 'content-type': 'application/octet-stream' });
    assert.equal(res.statusCode, 204, res.body);
    return (await t.call('a-member', 'GET', `/v2/images/${id}`)).json();
  };

  it('sets them from the partition table and the filesystem label', async () => {
    const image = await upload(await t.create('a-member'));
    assert.equal(image.status, 'active');
    assert.equal(image.pir_detected_partition_table, 'mbr');
    assert.equal(image.pir_detected_partition_1_fs, 'ext4');
    assert.equal(image.pir_detected_partition_1_label, 'rootfs');
  });

  it('keeps a value the user set under the same name', async () => {
    const id = await t.create('a-member', { pir_detected_partition_1_label: 'my-label' });
    const image = await upload(id);
    assert.equal(image.pir_detected_partition_1_label, 'my-label');
    assert.equal(image.pir_detected_partition_1_fs, 'ext4');
    // Other pir_ names stay read-only.
    assert.equal((await t.call('a-member', 'POST', '/v2/images', { name: 'x', pir_stage: 'x' })).statusCode, 403);
  });
});
