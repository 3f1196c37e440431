/**
 * The data directory at start-up (infra/data-dir.ts): made level by level, refused in one line
 * naming PIR_DATA_DIR when it cannot work, held by one embedded process at a time (a lock left by
 * a process that is gone is taken over); a manifest written by a newer PIR is refused; a host
 * PIR cannot listen on is said in one line naming PIR_HOST.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { listenFailure } from '../../../cli/server-commands.js';
import { lockDataDir, prepareDataDir } from '../../../infra/data-dir.js';
import { SqliteManifestStore } from '../../../infra/embedded/sqlite-manifest-store.js';
import { StartupError } from '../../../infra/startup-error.js';

const dir = await mkdtemp(join(tmpdir(), 'pir-data-dir-'));
after(() => rm(dir, { recursive: true, force: true }));

const startTime = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
};

describe('the data directory at start-up', () => {
  it('is made level by level, and a path that cannot work is refused in one line naming PIR_DATA_DIR', async () => {
    await prepareDataDir(join(dir, 'a', 'b', 'c'));
    await writeFile(join(dir, 'a-file'), 'x');
    const refusals: [string, RegExp][] = [
      [join(dir, 'a-file', 'sub'), /is not a directory/],
      [join(dir, 'a-file'), /is not a directory/],
      // Node's recursive mkdir loops forever here.
      ['/proc/nonexistent/x', /cannot create \/proc\/nonexistent/],
    ];
    for (const [path, why] of refusals) {
      await assert.rejects(prepareDataDir(path), (error: Error) => error instanceof StartupError && error.message.startsWith(`PIR_DATA_DIR=${path} cannot be used: `) && why.test(error.message), path);
    }
  });

  it('is held by one process: a live holder is refused, a lock left by a process that is gone is taken over, release frees it', async () => {
    const data = join(dir, 'locked');
    await prepareDataDir(data);
    const lockPath = join(data, 'pir.lock');
    // A live holder: the test runner's parent, with its real start time.
    await writeFile(lockPath, JSON.stringify({ pid: process.ppid, started: startTime(process.ppid) }));
    await assert.rejects(lockDataDir(data), (error: Error) => error instanceof StartupError && error.message.includes(`in use by another PIR process (pid ${process.ppid}`));
    // The same pid started at another time: recycled, not the holder.
    await writeFile(lockPath, JSON.stringify({ pid: process.ppid, started: '1' }));
    const recycled = await lockDataDir(data);
    assert.equal(JSON.parse(await readFile(lockPath, 'utf8')).pid, process.pid);
    await recycled.release();
    // Gone (no such pid), or a file cut short by a crash.
    for (const left of [JSON.stringify({ pid: 4_194_000, started: '5' }), '{"pid": 12']) {
      await writeFile(lockPath, left);
      const lock = await lockDataDir(data);
      await lock.release();
    }
    await assert.rejects(readFile(lockPath), /ENOENT/, 'released');
    const fresh = await lockDataDir(data);
    await assert.rejects(readFile(join(data, `pir.lock.${process.pid}`)), /ENOENT/);
    await fresh.release();
  });

  it('refuses a manifest written by a newer PIR (a newer schema version), before touching it', async () => {
    const path = join(dir, 'manifest.sqlite');
    new SqliteManifestStore({ path }).close();
    const db = new Database(path);
    db.pragma('user_version = 99');
    db.close();
    assert.throws(() => new SqliteManifestStore({ path }), (error: Error) => error instanceof StartupError && /schema version 99, newer than this PIR's \d+/.test(error.message));
    const again = new Database(path);
    assert.equal(again.pragma('user_version', { simple: true }), 99, 'left as it was');
    again.close();
  });

  it('says in one line naming PIR_HOST when the host does not resolve or is not this machine\'s', () => {
    const unresolved = Object.assign(new Error('getaddrinfo ENOTFOUND nosuchhost.invalid'), { code: 'ENOTFOUND', syscall: 'getaddrinfo', hostname: 'nosuchhost.invalid' });
    assert.match(listenFailure(unresolved, null, 'nosuchhost.invalid')!, /^PIR_HOST=nosuchhost\.invalid does not resolve to an address \(ENOTFOUND\)/);
    const foreign = Object.assign(new Error('listen EADDRNOTAVAIL'), { code: 'EADDRNOTAVAIL', syscall: 'listen', address: '10.255.255.1', port: 9292 });
    assert.match(listenFailure(foreign, null, '10.255.255.1')!, /^PIR_HOST=10\.255\.255\.1 is not an address of this machine \(EADDRNOTAVAIL\)/);
    assert.equal(listenFailure(new Error('other'), null, 'x'), null);
  });
});
