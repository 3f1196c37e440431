/**
 * Group commit for a better-sqlite3 database in WAL mode.
 *
 * With `synchronous = FULL` SQLite fsyncs the WAL inside every commit, and better-sqlite3 runs
 * that commit on the event loop: every manifest write stopped the whole process for an fsync
 * (a third of the main thread's time with 8 small uploads in flight, ~11 fsyncs per image).
 * Instead the connection runs with `synchronous = NORMAL` (a commit only writes its WAL frames
 * into the page cache) and a writer awaits `durable()`, which resolves once an fdatasync of the
 * WAL file that began after its commit has finished. That fdatasync runs on libuv's thread
 * pool, and one serves every commit made while the previous one ran.
 *
 * What is durable when: a write whose promise has resolved is on disk, exactly as with
 * `synchronous = FULL` (SQLite's FULL is NORMAL plus this one WAL sync per commit; checkpoints
 * still sync the WAL and the database file themselves). Callers act on a write (publish its
 * events, answer the client) only after that. A write that has committed but not yet resolved
 * is visible to readers in this process; a power loss (not a process crash: the page cache
 * survives that) in that window loses it, like a transaction that never committed.
 *
 * An fdatasync that fails leaves the page cache in an unknown state (a later one may report
 * success for pages it never wrote), so the failure is sticky: every later write rejects too,
 * and the process must restart (then SQLite's recovery decides what the WAL holds).
 */
import { basename } from 'node:path';
import type Database from 'better-sqlite3';
import { GroupFsync } from '../storage/group-fsync.js';
import { sqliteDurableWrites, sqliteWalSyncs } from '../telemetry/metrics.js';

export class WalGroupCommit {
  /** The WAL's fdatasyncs, one for every write made while the one before ran; null in memory. */
  private readonly wal: GroupFsync | null;
  private closed = false;
  /** fdatasync calls made (each covers every write that waited for it), for tests and benches. */
  syncs = 0;
  /** Writes made durable. */
  writes = 0;

  /** Switches `db` (already in WAL mode) to synchronous = NORMAL; its WAL file is `${path}-wal`. */
  constructor(db: Database.Database, path: string) {
    if (path === ':memory:' || path === '') {
      this.wal = null;
      return;
    }
    db.pragma('synchronous = NORMAL');
    // The metrics' label: the database file's name (manifest.sqlite, catalog.sqlite).
    const label = { db: basename(path) };
    this.wal = new GroupFsync(`${path}-wal`, {
      dataOnly: true,
      permanentFailure: (cause) => new Error(`SQLite's write-ahead log could not be synced to disk (${cause.message}); writes since the last sync may not be durable, so this process refuses further writes: restart it.`, { cause }),
      onSynced: (writes) => {
        this.syncs++;
        this.writes += writes;
        sqliteWalSyncs.inc(label);
        sqliteDurableWrites.inc(label, writes);
      },
    });
  }

  /** Resolves once every commit made before this call is on disk. */
  durable(): Promise<void> {
    if (!this.wal) return Promise.resolve();
    if (this.closed) return Promise.reject(new Error('the SQLite database is closed'));
    return this.wal.sync();
  }

  /** Stops taking writes; those waiting get their fdatasync first. */
  async close(): Promise<void> {
    this.closed = true;
    await this.wal?.close();
  }
}
