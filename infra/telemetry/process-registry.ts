/**
 * Which PIR processes are alive, for the ops page: every process writes a small heartbeat file
 * under <data dir>/processes every few seconds (the data directory is shared by all processes
 * of a deployment, in both modes); a file not refreshed for 3 beats is a process gone.
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';

export interface ProcessInfo {
  id: string;
  role: string;
  host: string;
  pid: number;
  started_at: string;
  seen_at: string;
  rss_bytes: number;
}

const BEAT_MS = 5000;

export class ProcessRegistry {
  private readonly dir: string;
  private readonly self: ProcessInfo;
  private timer: NodeJS.Timeout | null = null;

  constructor(dataDir: string, role: string) {
    this.dir = join(dataDir, 'processes');
    const id = `${hostname()}-${process.pid}`.replace(/[^A-Za-z0-9._-]/g, '_');
    const now = new Date().toISOString();
    this.self = { id, role, host: hostname(), pid: process.pid, started_at: now, seen_at: now, rss_bytes: 0 };
  }

  async start(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await this.beat();
    this.timer = setInterval(() => { void this.beat().catch(() => undefined); }, BEAT_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await rm(this.file(this.self.id), { force: true });
  }

  /** Processes seen within the last three beats. */
  async alive(now = Date.now()): Promise<ProcessInfo[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const infos = await Promise.all(names.filter((n) => n.endsWith('.json')).map(async (n) => {
      try {
        return JSON.parse(await readFile(join(this.dir, n), 'utf8')) as ProcessInfo;
      } catch {
        return null; // being rewritten, or not ours
      }
    }));
    return infos.filter((p): p is ProcessInfo => p !== null && now - Date.parse(p.seen_at) < 3 * BEAT_MS)
      .sort((a, b) => a.role.localeCompare(b.role) || a.id.localeCompare(b.id));
  }

  private async beat(): Promise<void> {
    this.self.seen_at = new Date().toISOString();
    this.self.rss_bytes = process.memoryUsage.rss();
    const path = this.file(this.self.id);
    await writeFile(`${path}.tmp`, JSON.stringify(this.self));
    await rename(`${path}.tmp`, path);
  }

  private file(id: string): string {
    return join(this.dir, `${id}.json`);
  }
}
