/**
 * Makes renames into one directory durable: `sync()` resolves once an fsync of the directory that
 * began after the call has finished. One fsync serves every caller that asked while the one
 * before it ran, and the directory stays open between them, so promoting an image costs one
 * fsync round trip instead of open, fsync and close (three trips through libuv's thread pool,
 * each a turn of a busy event loop) and one fsync per image.
 *
 * A failed fsync fails the callers it was for; the next call reopens the directory and tries
 * again (a failed promotion is retried by its stage, as before).
 */
import { close, fsync, open } from 'node:fs';

export class DirectorySync {
  private fd: number | null = null;
  private waiting: { resolve: () => void; reject: (error: Error) => void }[] = [];
  private syncing = false;
  /** fsyncs made, for tests. */
  syncs = 0;

  constructor(private readonly dir: string) {}

  /** Resolves once every rename into the directory finished before this call is on disk. */
  sync(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      if (!this.syncing) this.next();
    });
  }

  private next(): void {
    if (this.waiting.length === 0) {
      this.syncing = false;
      return;
    }
    this.syncing = true;
    // Everyone waiting now asked before this fsync starts: it covers them all.
    const batch = this.waiting;
    this.waiting = [];
    const done = (error: Error | null) => {
      if (error) {
        this.forget();
        for (const w of batch) w.reject(error);
      } else {
        this.syncs++;
        for (const w of batch) w.resolve();
      }
      this.next();
    };
    const run = (fd: number) => fsync(fd, (error) => done(error));
    if (this.fd !== null) return run(this.fd);
    open(this.dir, 'r', (error, fd) => {
      if (error) return done(error);
      this.fd = fd;
      run(fd);
    });
  }

  /** Closes the directory (a later sync opens it again). */
  private forget(): void {
    if (this.fd !== null) close(this.fd, () => {});
    this.fd = null;
  }
}
