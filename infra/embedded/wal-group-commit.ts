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
import { closeSync, fdatasync, openSync } from 'node:fs';
import { basename } from 'node:path';
import type Database from 'better-sqlite3';
import { sqliteDurableWrites, sqliteWalSyncs } from '../telemetry/metrics.js';

export class WalGroupCommit {
  private readonly memory: boolean;
  /** The metrics' label: the database file's name (manifest.sqlite, catalog.sqlite). */
  private readonly label: { db: string };
  private fd: number | null = null;
  /** Writers whose commit the next fdatasync must cover. */
  private waiting: { resolve: () => void; reject: (error: Error) => void }[] = [];
  private syncing = false;
  private failure: Error | null = null;
  private closed = false;
  /** fdatasync calls made (each covers every write that waited for it), for tests and benches. */
  syncs = 0;
  /** Writes made durable. */
  writes = 0;

  /** Switches `db` (already in WAL mode) to synchronous = NORMAL; its WAL file is `${path}-wal`. */
  constructor(db: Database.Database, private readonly path: string) {
    this.memory = path === ':memory:' || path === '';
    this.label = { db: basename(path) };
    if (!this.memory) db.pragma('synchronous = NORMAL');
  }

  /** Resolves once every commit made before this call is on disk. */
  durable(): Promise<void> {
    if (this.memory) return Promise.resolve();
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new Error('the SQLite database is closed'));
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      if (!this.syncing) this.sync();
    });
  }

  /** Stops taking writes; those waiting get their fdatasync first. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.syncing) await new Promise((r) => setImmediate(r));
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  private sync(): void {
    // Everyone waiting now committed before this fdatasync starts: it covers them all.
    const batch = this.waiting;
    this.waiting = [];
    this.syncing = true;
    let fd: number;
    try {
      fd = this.fd ??= openSync(`${this.path}-wal`, 'r');
    } catch (error) {
      this.fail(batch, error as Error);
      return;
    }
    fdatasync(fd, (error) => {
      if (error) return this.fail(batch, error);
      this.syncs++;
      this.writes += batch.length;
      sqliteWalSyncs.inc(this.label);
      sqliteDurableWrites.inc(this.label, batch.length);
      this.syncing = false;
      for (const w of batch) w.resolve();
      if (this.waiting.length > 0) this.sync();
    });
  }

  private fail(batch: { reject: (error: Error) => void }[], cause: Error): void {
    this.failure = new Error(`SQLite's write-ahead log could not be synced to disk (${cause.message}); writes since the last sync may not be durable, so this process refuses further writes: restart it.`, { cause });
    this.syncing = false;
    for (const w of [...batch, ...this.waiting]) w.reject(this.failure);
    this.waiting = [];
  }
}
