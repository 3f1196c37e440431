/**
 * Where embedded mode keeps the jobs of durable kinds until they finish, so that a restart (or
 * a crash mid-job) resumes them: one row per unfinished job, with its attempts and next run time.
 */
import Database from 'better-sqlite3';
import { WalGroupCommit } from './wal-group-commit.js';

export interface JournalRow {
  id: string;
  kind: string;
  data: unknown;
  attemptsMade: number;
  /** ms since epoch. */
  runAt: number;
}

export interface JobJournal {
  /** Adds a job; false when the id is already there. On disk once `durable()` resolves. */
  add(row: JournalRow): boolean;
  /** Resolves once every change made before this call is on disk. */
  durable(): Promise<void>;
  reschedule(id: string, attemptsMade: number, runAt: number): void;
  remove(id: string): void;
  pending(kind: string): JournalRow[];
  close(): void;
}

export class SqliteJobJournal implements JobJournal {
  private readonly db: Database.Database;
  private readonly insert: Database.Statement;
  private readonly update: Database.Statement;
  private readonly del: Database.Statement;
  private readonly select: Database.Statement<[string], { id: string; kind: string; data: string; attempts_made: number; run_at: number }>;
  /** One fdatasync, off the event loop, for every change made meanwhile (was one per change, on it). */
  private readonly commits: WalGroupCommit;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('journal_mode = WAL');
    this.db.exec(`CREATE TABLE IF NOT EXISTS jobs (
      id TEXT PRIMARY KEY, kind TEXT NOT NULL, data TEXT NOT NULL, attempts_made INTEGER NOT NULL, run_at INTEGER NOT NULL)`);
    this.insert = this.db.prepare('INSERT OR IGNORE INTO jobs (id, kind, data, attempts_made, run_at) VALUES (?, ?, ?, ?, ?)');
    this.update = this.db.prepare('UPDATE jobs SET attempts_made = ?, run_at = ? WHERE id = ?');
    this.del = this.db.prepare('DELETE FROM jobs WHERE id = ?');
    this.select = this.db.prepare('SELECT id, kind, data, attempts_made, run_at FROM jobs WHERE kind = ? ORDER BY run_at');
    this.commits = new WalGroupCommit(this.db, path);
  }

  durable(): Promise<void> {
    return this.commits.durable();
  }

  add(row: JournalRow): boolean {
    return this.insert.run(row.id, row.kind, JSON.stringify(row.data), row.attemptsMade, row.runAt).changes === 1;
  }

  // A reschedule or removal lost to a power cut runs the job again (jobs are idempotent: they
  // resume from the manifest), so nobody waits for these; the sync still starts now.
  reschedule(id: string, attemptsMade: number, runAt: number): void {
    this.update.run(attemptsMade, runAt, id);
    this.commits.durable().catch(() => {}); // a failed sync is sticky: the next add reports it
  }

  remove(id: string): void {
    this.del.run(id);
    this.commits.durable().catch(() => {});
  }

  pending(kind: string): JournalRow[] {
    return this.select.all(kind).map((r) => ({ id: r.id, kind: r.kind, data: JSON.parse(r.data) as unknown, attemptsMade: r.attempts_made, runAt: r.run_at }));
  }

  close(): void {
    // Changes not yet synced are in the page cache: a process that stops or crashes keeps them.
    void this.commits.close().finally(() => this.db.close());
  }
}
