/**
 * One fsync for many callers: `sync()` resolves once a sync of the file that began after the
 * call has finished, and every caller who asks while one runs shares the next one. The file stays
 * open between syncs, so a caller costs one round trip through libuv's thread pool (not open,
 * sync and close: three turns of a busy event loop). Used for SQLite's write-ahead log
 * (infra/embedded/wal-group-commit.ts, fdatasync) and for the filesystem store's images
 * directory, whose promotions (links made in it) it makes durable (fsync).
 */
import { close, fdatasync, fsync, open } from 'node:fs';

export interface GroupFsyncOptions {
  /** fdatasync (a file's data) instead of fsync (e.g. a directory's entries). */
  dataOnly?: boolean;
  /**
   * What a failed sync means. Absent: it fails the callers it was for, and the next call reopens
   * the file and tries again. Given: the failure is for good (after a failed fdatasync the page
   * cache is in an unknown state, and a later one may report success for pages it never wrote):
   * the error this returns fails those callers, everyone waiting and every later call.
   */
  permanentFailure?: (cause: Error) => Error;
  /** After each sync that succeeded, with how many callers it served (metrics). */
  onSynced?: (callers: number) => void;
}

interface Waiter {
  resolve: () => void;
  reject: (error: Error) => void;
}

export class GroupFsync {
  private fd: number | null = null;
  private waiting: Waiter[] = [];
  private syncing = false;
  private failure: Error | null = null;
  /** Syncs made, for tests. */
  syncs = 0;

  constructor(private readonly path: string, private readonly options: GroupFsyncOptions = {}) {}

  /** Resolves once everything written (or linked, or renamed) into the file before this call is on disk. */
  sync(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      if (!this.syncing) this.next();
    });
  }

  /** Lets the sync in flight, and the callers queued behind it, finish; then closes the file. */
  async close(): Promise<void> {
    while (this.syncing) await new Promise((r) => setImmediate(r));
    this.forget();
  }

  private next(): void {
    if (this.waiting.length === 0) {
      this.syncing = false;
      return;
    }
    this.syncing = true;
    // Everyone waiting now asked before this sync starts: it covers them all.
    const batch = this.waiting;
    this.waiting = [];
    const done = (error: Error | null) => {
      if (error) this.fail(batch, error);
      else {
        this.syncs++;
        this.options.onSynced?.(batch.length);
        for (const w of batch) w.resolve();
      }
      this.next();
    };
    const run = (fd: number) => (this.options.dataOnly ? fdatasync : fsync)(fd, done);
    if (this.fd !== null) return run(this.fd);
    open(this.path, 'r', (error, fd) => {
      if (error) return done(error);
      this.fd = fd;
      run(fd);
    });
  }

  private fail(batch: Waiter[], cause: Error): void {
    this.forget();
    if (!this.options.permanentFailure) {
      for (const w of batch) w.reject(cause);
      return;
    }
    this.failure = this.options.permanentFailure(cause);
    for (const w of [...batch, ...this.waiting]) w.reject(this.failure);
    this.waiting = [];
  }

  /** Closes the file (a later sync opens it again). */
  private forget(): void {
    if (this.fd !== null) close(this.fd, () => {});
    this.fd = null;
  }
}
