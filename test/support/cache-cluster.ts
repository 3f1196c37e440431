/**
 * An upstream `pir serve` (tokens-file identity, webhooks to loopback allowed) and `pir cache`
 * nodes in front of it, as processes: what the cache tests and the cache bench start.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { PirClient } from './pir-client.js';
import { freePort, startPirProcess, type PirProcess } from './pir-process.js';

export const ADMIN = 'cache-e2e-admin-0123456789abcdefghij';
export const ALICE = 'cache-e2e-alice-0123456789';
export const BOB = 'cache-e2e-bob-9876543210';

export interface CacheNode {
  url: string;
  dataDir: string;
  process: PirProcess;
  env: Record<string, string>;
}

export async function startUpstream(dir: string, logDir: string, extraEnv: Record<string, string> = {}): Promise<{ url: string; process: PirProcess }> {
  const tokensFile = join(dir, 'tokens.json');
  await writeFile(tokensFile, JSON.stringify({ tokens: [
    { token: ALICE, project_id: 'alice-project', user_id: 'alice', roles: ['member'] },
    { token: BOB, project_id: 'bob-project', user_id: 'bob', roles: ['member'] },
  ] }));
  const port = await freePort();
  const process = await startPirProcess('serve', {
    PIR_DATA_DIR: join(dir, 'upstream'), PIR_PORT: String(port), PIR_ADMIN_TOKEN: ADMIN, PIR_TOKENS_FILE: tokensFile,
    PIR_EGRESS_ALLOWLIST: '127.0.0.1/32', PIR_WEBHOOK_RETRY_SCHEDULE: '200,500,1000', ...extraEnv,
  }, logDir, 'upstream');
  return { url: `http://127.0.0.1:${port}`, process };
}

export async function startCacheNode(upstream: string, dataDir: string, logDir: string, name: string, extraEnv: Record<string, string> = {}, port?: number): Promise<CacheNode> {
  const chosen = port ?? await freePort();
  const url = `http://127.0.0.1:${chosen}`;
  const env = {
    PIR_DATA_DIR: dataDir, PIR_PORT: String(chosen), PIR_HOST: '127.0.0.1', PIR_ADMIN_TOKEN: ADMIN, PIR_CACHE_UPSTREAM: upstream,
    PIR_CACHE_PUBLIC_URL: url, PIR_CACHE_UPSTREAM_TOKEN: ADMIN, ...extraEnv,
  };
  return { url, dataDir, env, process: await startPirProcess('cache', env, logDir, name) };
}

/** A raw image of `size` bytes made of a repeated random block (fast to make, still hashed end to end), active upstream. */
export async function makeActiveRawImage(upstream: string, token: string, dir: string, size: number, name = 'cache-test'): Promise<{ id: string; sha512: string; file: string }> {
  const file = join(dir, `${name}-${randomBytes(4).toString('hex')}.raw`);
  const block = randomBytes(1 << 20);
  const hash = createHash('sha512');
  async function* blocks() {
    for (let written = 0; written < size; written += block.length) {
      const chunk = block.subarray(0, Math.min(block.length, size - written));
      hash.update(chunk);
      yield chunk;
    }
  }
  await pipeline(Readable.from(blocks()), createWriteStream(file));
  const client = new PirClient(upstream, token);
  const image = await client.createImage({ name, disk_format: 'raw', container_format: 'bare' });
  const put = await client.putData(image.id, file);
  if (put.status !== 204) throw new Error(`upload answered ${put.status}: ${JSON.stringify(put.body)}`);
  const settled = await client.waitSettled(image.id);
  if (settled.status !== 'active') throw new Error(`image ${image.id} is ${settled.status}`);
  return { id: image.id as string, sha512: hash.digest('hex'), file };
}

export interface Download { status: number; sha512: string; bytes: number; headers: Headers; body: string | null }

/** Downloads (streaming) and digests the answer (unless `hash` is false: many parallel 1 GiB digests would time the test, not the cache); the body text is kept only for small non-200 answers. */
export async function download(base: string, id: string, token: string | null, headers: Record<string, string> = {}, hash = true): Promise<Download> {
  const response = await fetch(`${base}/v2/images/${id}/file`, { headers: { ...(token ? { 'x-auth-token': token } : {}), ...headers } });
  if (response.status !== 200 && response.status !== 206) {
    return { status: response.status, sha512: '', bytes: 0, headers: response.headers, body: await response.text() };
  }
  const hasher = hash ? createHash('sha512') : null;
  let bytes = 0;
  for await (const chunk of Readable.fromWeb(response.body! as import('node:stream/web').ReadableStream<Uint8Array>)) {
    hasher?.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { status: response.status, sha512: hasher?.digest('hex') ?? '', bytes, headers: response.headers, body: null };
}

/** A counter's value in a Prometheus text page. */
export async function metric(base: string, name: string, token = ADMIN): Promise<number> {
  const text = await (await fetch(`${base}/metrics`, { headers: { 'x-auth-token': token } })).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

/** Overwrites bytes in the middle of a file (a corrupted cache entry). */
export async function corrupt(path: string, offset: number): Promise<void> {
  const file = await open(path, 'r+');
  try {
    await file.write(randomBytes(4096), 0, 4096, offset);
  } finally {
    await file.close();
  }
}
