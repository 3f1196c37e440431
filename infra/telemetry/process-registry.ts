/**
 * Which PIR processes are alive, for the ops page: every process writes a small heartbeat every
 * few seconds, and one not refreshed for 3 beats is a process gone. Embedded mode beats into a
 * file under <data dir>/processes; distributed mode into Redis, the one thing every api and
 * worker shares even when they run on machines with no common filesystem (S3 store).
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { redisRetryDelay } from '../redis-reconnect.js';

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
const GONE_AFTER_MS = 3 * BEAT_MS;

/** Where heartbeats are kept: written by each process, read by the ops page of any api. */
interface HeartbeatStore {
  open(): Promise<void>;
  put(info: ProcessInfo): Promise<void>;
  remove(id: string): Promise<void>;
  all(): Promise<ProcessInfo[]>;
  close(): Promise<void>;
}

export class ProcessRegistry {
  private readonly self: ProcessInfo;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly beats: HeartbeatStore, role: string, name = `${hostname()}-${process.pid}`) {
    const id = name.replace(/[^A-Za-z0-9._-]/g, '_');
    const now = new Date().toISOString();
    this.self = { id, role, host: hostname(), pid: process.pid, started_at: now, seen_at: now, rss_bytes: 0 };
  }

  async start(): Promise<void> {
    await this.beats.open();
    // A heartbeat store that is down (Redis) must not stop the process: /readyz reports it.
    await this.beat().catch(() => undefined);
    this.timer = setInterval(() => { void this.beat().catch(() => undefined); }, BEAT_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.beats.remove(this.self.id).catch(() => undefined);
    await this.beats.close();
  }

  /** Processes seen within the last three beats. */
  async alive(now = Date.now()): Promise<ProcessInfo[]> {
    return (await this.beats.all()).filter((p) => now - Date.parse(p.seen_at) < GONE_AFTER_MS)
      .sort((a, b) => a.role.localeCompare(b.role) || a.id.localeCompare(b.id));
  }

  private async beat(): Promise<void> {
    this.self.seen_at = new Date().toISOString();
    this.self.rss_bytes = process.memoryUsage.rss();
    await this.beats.put(this.self);
  }
}

/** The registry for this deployment: in Redis when there is one (distributed), else in files. */
export function openProcessRegistry(role: string, where: { dataDir: string; redisUrl?: string | null; redisPrefix: string; name?: string }): ProcessRegistry {
  const beats = where.redisUrl ? new RedisHeartbeats(where.redisUrl, where.redisPrefix) : new FileHeartbeats(join(where.dataDir, 'processes'));
  return new ProcessRegistry(beats, role, where.name);
}

function parseInfo(text: string | null): ProcessInfo | null {
  if (!text) return null;
  try {
    return JSON.parse(text) as ProcessInfo;
  } catch {
    return null; // being rewritten, or not ours
  }
}

export class FileHeartbeats implements HeartbeatStore {
  constructor(private readonly dir: string) {}

  async open(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  async put(info: ProcessInfo): Promise<void> {
    const path = this.file(info.id);
    await writeFile(`${path}.tmp`, JSON.stringify(info));
    await rename(`${path}.tmp`, path);
  }

  async remove(id: string): Promise<void> {
    await rm(this.file(id), { force: true });
  }

  async all(): Promise<ProcessInfo[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const infos = await Promise.all(names.filter((n) => n.endsWith('.json'))
      .map(async (n) => parseInfo(await readFile(join(this.dir, n), 'utf8').catch(() => null))));
    return infos.filter((p): p is ProcessInfo => p !== null);
  }

  async close(): Promise<void> {}

  private file(id: string): string {
    return join(this.dir, `${id}.json`);
  }
}

/**
 * One key per process, `<prefix>:processes:<id>`, that expires when the process stops beating
 * (a killed process disappears by itself); listed with SCAN, never KEYS, so a large Redis is not
 * blocked by the ops page.
 */
export class RedisHeartbeats implements HeartbeatStore {
  private readonly redis: Redis;
  private readonly keyPrefix: string;

  constructor(url: string, prefix: string) {
    this.redis = new Redis(url, { maxRetriesPerRequest: 2, retryStrategy: redisRetryDelay, connectionName: 'pir-processes' });
    this.redis.on('error', () => undefined); // ioredis reconnects; a failed beat is retried by the next
    this.keyPrefix = `${prefix}:processes:`;
  }

  async open(): Promise<void> {} // ioredis connects, and reconnects, by itself

  async put(info: ProcessInfo): Promise<void> {
    await this.redis.set(this.keyPrefix + info.id, JSON.stringify(info), 'PX', GONE_AFTER_MS);
  }

  async remove(id: string): Promise<void> {
    await this.redis.del(this.keyPrefix + id);
  }

  async all(): Promise<ProcessInfo[]> {
    const keys = new Set<string>();
    // The pattern escapes glob characters a prefix may hold.
    const match = `${this.keyPrefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
    for await (const batch of this.redis.scanStream({ match, count: 200 }) as AsyncIterable<string[]>) for (const k of batch) keys.add(k);
    if (keys.size === 0) return [];
    const values = await this.redis.mget(...keys);
    return values.map(parseInfo).filter((p): p is ProcessInfo => p !== null);
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}
