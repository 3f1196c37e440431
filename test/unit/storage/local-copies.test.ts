/**
 * infra/storage/local-copies.ts: a starting process removes the local copies its host's dead
 * processes left, and never a live process's.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { makeLocalCopyDir, removeDeadProcessCopies } from '../../../infra/storage/local-copies.js';

/** A pid that just exited (and is most unlikely to be reused within the test). */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(child.stdout);
}

describe('local copies of blobs', () => {
  it('names a copy directory after this process and host', async () => {
    const dir = await makeLocalCopyDir();
    try {
      assert.ok(dir.startsWith(join(tmpdir(), `pir-blob-${process.pid}@${hostname()}-`)), dir);
    } finally { await rm(dir, { recursive: true, force: true }); }
  });

  it("removes a dead process's copies, and keeps live processes', other hosts' and unknown names", async () => {
    const root = await mkdtemp(join(tmpdir(), 'pir-local-copies-test-'));
    try {
      const dead = `pir-blob-${deadPid()}@${hostname()}-AbC123`;
      const mine = `pir-blob-${process.pid}@${hostname()}-XyZ789`;
      const live = `pir-blob-1@${hostname()}-Qwe456`; // pid 1 is always alive
      const elsewhere = `pir-blob-${deadPid()}@another-host-Rty012`;
      const older = 'pir-blob-Uio345'; // made before copies were named: whose it is is unknown
      for (const name of [dead, mine, live, elsewhere, older]) {
        await mkdir(join(root, name));
        await writeFile(join(root, name, 'blob'), 'bytes');
      }
      assert.equal(await removeDeadProcessCopies(undefined, root), 1);
      assert.deepEqual((await readdir(root)).sort(), [elsewhere, live, mine, older].sort());
    } finally { await rm(root, { recursive: true, force: true }); }
  });
});
