/** An in-process PIR API on the embedded domain (no workers), for inject() and real-socket tests. */
import { createHash } from 'node:crypto';
import { stagingKey } from '../../../core/blob-keys.js';
import { writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { connect, type Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildApp, type AppDeps } from '../../../api/app.js';
import { HashPool } from '../../../ingest/hashing/index.js';
import { TokensFileAuthenticator } from '../../../infra/identity/tokens-file.js';
import { Quotas, UNLIMITED } from '../../../core/quota.js';
import { WebDownloads } from '../../../ingest/web-download.js';
import { parseAllowList } from '../../../infra/egress/address-policy.js';
import { DEFAULT_EGRESS, EgressClient } from '../../../infra/egress/egress-client.js';
import { SqliteQuotaStore } from '../../../infra/embedded/sqlite-quota-store.js';
import { domain } from '../core/fixtures.js';
import { tokenInvalid, type Authenticator } from '../../../core/authenticator.js';
import type { Caller } from '../../../core/caller.js';

export const TOKEN = 'unit-test-token-0123456789abcdefghij';

/** An authenticator that knows these tokens' callers and refuses any other token (401). */
export function callersAuthenticator(callers: Record<string, Caller>): Authenticator {
  return {
    challenge: null,
    async authenticate(token) { const caller = callers[token]; if (!caller) throw tokenInvalid(); return caller; },
    async close() {},
  };
}

export interface AppFixture {
  app: FastifyInstance;
  d: Awaited<ReturnType<typeof domain>>;
  /** Every log line the app wrote, parsed. */
  logs: Record<string, any>[];
  close(): Promise<void>;
}

export async function appFixture(options: { idleMs?: number; settleWaitMs?: number; publicUrl?: string | null; logLevel?: string; httpTimeouts?: AppDeps['httpTimeouts'] } = {}): Promise<AppFixture> {
  const d = await domain();
  const logs: Record<string, any>[] = [];
  const log = pino({ level: options.logLevel ?? 'info' }, { write: (line: string) => { logs.push(JSON.parse(line)); } });
  const authenticator = await TokensFileAuthenticator.open({ path: null, adminToken: TOKEN, log });
  const hashes = HashPool.shared();
  const upload = { maxImageSize: 64 * 1024 * 1024, heartbeatMs: 60_000, idleMs: options.idleMs ?? 60_000, settleWaitMs: options.settleWaitMs };
  const quotas = new Quotas(new SqliteQuotaStore({ path: ':memory:' }), { default: UNLIMITED, projects: {} });
  const webDownloads = new WebDownloads({ images: d.images, quotas, blobs: d.blobs, hashes, upload, egress: new EgressClient({ ...DEFAULT_EGRESS, allowList: parseAllowList('') }), log });
  const app = await buildApp({
    images: d.images, manifest: d.manifest, blobs: d.blobs, hashes, log, authenticator, upload, quotas, webDownloads,
    publicUrl: options.publicUrl ?? null,
    httpTimeouts: options.httpTimeouts,
  });
  // Closing drops every connection: a test that failed must not leave a stuck upload holding the app open.
  return { app, d, logs, close: async () => { app.server.closeAllConnections(); await app.close(); await webDownloads.close(); await authenticator.close(); await d.close(); } };
}

/** Listens on a free loopback port; returns the port. */
export async function listen(app: FastifyInstance): Promise<number> {
  await app.listen({ host: '127.0.0.1', port: 0 });
  return (app.server.address() as AddressInfo).port;
}

/** A queued image with formats set, ready for an upload. */
export async function queuedImage(f: AppFixture, name = 'img'): Promise<string> {
  const doc = await f.d.images.create({ project_id: 'admin', user_id: 'u', roles: ['admin'] }, { name, disk_format: 'raw', container_format: 'bare' });
  return doc.id;
}

/** An active image holding `bytes`, as the pipeline would leave it. */
export async function activeImage(f: AppFixture, bytes: Buffer): Promise<string> {
  const id = await queuedImage(f, 'active');
  const staged = stagingKey(id, 1, 'unpacked');
  await writeFile(f.d.blobs.pathOf(staged), bytes);
  await f.d.blobs.promote(staged, id);
  await f.d.manifest.update(id, (draft) => {
    draft.status = 'active';
    draft.size = bytes.length;
    draft.checksum = createHash('md5').update(bytes).digest('hex');
    draft.os_hash_algo = 'sha512';
    draft.os_hash_value = createHash('sha512').update(bytes).digest('hex');
    return [];
  });
  return id;
}

/** A raw HTTP/1.1 connection: write bytes, read whatever the server answers until it closes. */
export class RawConnection {
  readonly socket: Socket;
  received = '';
  closed: Promise<void>;
  error: Error | null = null;

  constructor(port: number) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.setEncoding('latin1');
    this.socket.on('data', (chunk: string) => { this.received += chunk; });
    this.socket.on('error', (e) => { this.error = e; });
    this.closed = new Promise((resolve) => this.socket.on('close', () => resolve()));
  }

  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve();
      this.socket.write(data, () => resolve());
    });
  }

  async waitFor(predicate: (received: string) => boolean, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.received)) {
      if (Date.now() > deadline) throw new Error(`timed out; received so far: ${JSON.stringify(this.received.slice(0, 500))}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** The first complete response's status, headers and JSON body (Content-Length framed). */
  firstResponse(): { status: number; headers: Record<string, string>; body: any } | null {
    let text = this.received;
    while (text.startsWith('HTTP/1.1 100')) text = text.slice(text.indexOf('\r\n\r\n') + 4);
    const end = text.indexOf('\r\n\r\n');
    if (end < 0) return null;
    const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
    const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
    const length = Number(headers['content-length'] ?? 0);
    const raw = text.slice(end + 4, end + 4 + length);
    if (raw.length < length) return null;
    let body: any = raw;
    try { body = raw ? JSON.parse(raw) : null; } catch { /* not JSON */ }
    return { status: Number(statusLine.split(' ')[1]), headers, body };
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export function assertErrorShape(body: any, status: number, code?: string): void {
  if (!body || typeof body !== 'object' || !body.error) throw new Error(`not PIR's error shape: ${JSON.stringify(body)}`);
  const e = body.error;
  if (e.code !== status || typeof e.title !== 'string' || typeof e.message !== 'string' || typeof e.error_code !== 'string') {
    throw new Error(`not PIR's error shape for ${status}: ${JSON.stringify(body)}`);
  }
  if (code !== undefined && e.error_code !== code) throw new Error(`error_code ${e.error_code}, expected ${code}: ${JSON.stringify(body)}`);
}
