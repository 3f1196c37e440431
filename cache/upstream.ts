/**
 * The upstream PIR, as the cache asks it who may read what. Every download is authorized by the
 * upstream with the caller's own token: HEAD /v2/images/{id}/file (the download policy itself)
 * and GET /v2/images/{id} (status and hash). Positive answers are kept for a few seconds in a
 * bounded LRU keyed by the token's hash and the image; concurrent identical questions share one
 * round trip. Anything but "active, downloadable, hashed" is not cached: the request goes to the
 * upstream as it came, so the caller gets exactly the upstream's answer.
 */
import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { LRUCache } from 'lru-cache';
import type { UpstreamBody } from './fill.js';

export interface ImageFacts {
  id: string;
  size: number;
  algo: string;
  hash: string;
  checksum: string | null;
}

/** The upstream's answer for one token and image: the facts when downloadable from the cache; the status it showed, if any. */
export interface Decision {
  facts: ImageFacts | null;
  /** The image's status as GET /v2/images/{id} showed it to this token; null when it did not. */
  status: string | null;
}

export interface UpstreamOptions {
  /** Upstream base URL, without a trailing slash. */
  base: string;
  decisionTtlMs: number;
  maxDecisions: number;
  timeoutMs: number;
}

const HASH_ALGOS = new Set(['sha512', 'sha384', 'sha256', 'sha1', 'md5']);

/** The upstream's 401 for a token it does not take, kept to be passed on as the upstream gave it. */
export class TokenRejected extends Error {
  constructor(readonly body: string, readonly headers: Record<string, string>) {
    super('upstream answered 401: the token is not valid');
  }
}

export class Upstream {
  private readonly decisions: LRUCache<string, ImageFacts>;
  private readonly admins: LRUCache<string, boolean>;
  private readonly inFlight = new Map<string, Promise<Decision>>();
  /** Bumped per image by forget(): an answer that was in flight across a forget is not kept. */
  private readonly generations = new Map<string, number>();

  constructor(private readonly o: UpstreamOptions) {
    this.decisions = new LRUCache({ max: o.maxDecisions, ttl: o.decisionTtlMs });
    this.admins = new LRUCache({ max: 1000, ttl: o.decisionTtlMs });
  }

  get base(): string {
    return this.o.base;
  }

  /** The image's facts if `token` may download it and it is active with a hash (facts null otherwise). */
  async downloadable(token: string, imageId: string): Promise<Decision> {
    const key = `${tokenKey(token)}:${imageId}`;
    const known = this.decisions.get(key);
    if (known) return { facts: known, status: 'active' };
    const pending = this.inFlight.get(key);
    if (pending) return pending;
    const generation = this.generations.get(imageId) ?? 0;
    const asking = this.ask(token, imageId).then((decision) => {
      if (decision.facts && (this.generations.get(imageId) ?? 0) === generation) this.decisions.set(key, decision.facts);
      return decision;
    }).finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, asking);
    return asking;
  }

  /** Forgets every decision about an image (an event said it changed). */
  forget(imageId: string): void {
    this.generations.set(imageId, (this.generations.get(imageId) ?? 0) + 1);
    if (this.generations.size > 100_000) this.generations.clear();
    const suffix = `:${imageId}`;
    for (const key of [...this.decisions.keys()]) if (key.endsWith(suffix)) this.decisions.delete(key);
  }

  /**
   * True when the upstream treats `token` as an administrator (it may read the upstream's
   * /metrics); throws TokenRejected when the upstream does not take the token at all (401).
   */
  async isAdmin(token: string): Promise<boolean> {
    const key = tokenKey(token);
    const known = this.admins.get(key);
    if (known !== undefined) return known;
    const response = await this.call('GET', '/metrics', token);
    // Not remembered: an unknown token is the caller's to fix (401), not a "no" (403).
    if (response.status === 401) throw new TokenRejected(await response.text(), passedHeaders(response.headers));
    await response.body?.cancel().catch(() => {});
    // A failing upstream has not said "no": that must not be remembered as an answer.
    if (response.status >= 500) throw new Error(`upstream answered ${response.status} to GET /metrics`);
    const admin = response.status === 200;
    this.admins.set(key, admin);
    return admin;
  }

  /**
   * How GET /v2/images/{id} answers `token` upstream: its HTTP status, and the image's status when
   * it is shown. The cache API looks an image up first, as Glance's does (404 when it does not
   * exist; only an active image can be queued).
   */
  async imageStatus(token: string, imageId: string): Promise<{ code: number; status: string | null }> {
    const response = await this.call('GET', `/v2/images/${encodeURIComponent(imageId)}`, token);
    if (response.status !== 200) {
      await response.body?.cancel().catch(() => {});
      return { code: response.status, status: null };
    }
    const image = await response.json().catch(() => null) as { status?: unknown } | null;
    return { code: 200, status: typeof image?.status === 'string' ? image.status : null };
  }

  /** GET …/file upstream with `token`, for a cache fill: node:http, whose streams are much faster than fetch's. */
  fetchFile(token: string, imageId: string, signal?: AbortSignal): Promise<UpstreamBody> {
    const url = new URL(`${this.o.base}/v2/images/${encodeURIComponent(imageId)}/file`);
    return new Promise((resolve, reject) => {
      const request = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, { headers: { 'x-auth-token': token }, signal }, (response) => {
        request.setTimeout(0);
        // An upstream silent this long mid-body fails the fill (and its readers).
        response.setTimeout(this.o.timeoutMs * 10, () => response.destroy(new Error('upstream went silent during the image\'s data')));
        resolve({ status: response.statusCode ?? 0, body: response });
      });
      // One that accepts the connection but never answers must fail the fill too, or the image
      // would wait on it for good (every later request joins the fill).
      request.setTimeout(this.o.timeoutMs, () => request.destroy(new Error(`upstream sent no answer for image ${imageId}'s data within ${this.o.timeoutMs / 1000} s`)));
      request.once('error', reject);
      request.end();
    });
  }

  call(method: string, path: string, token: string, body?: unknown): Promise<Response> {
    const headers: Record<string, string> = { 'x-auth-token': token };
    if (body !== undefined) headers['content-type'] = 'application/json';
    return fetch(`${this.o.base}${path}`, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(this.o.timeoutMs),
    });
  }

  private async ask(token: string, imageId: string): Promise<Decision> {
    const path = `/v2/images/${encodeURIComponent(imageId)}`;
    const [head, get] = await Promise.all([this.call('HEAD', `${path}/file`, token), this.call('GET', path, token)]);
    await head.body?.cancel().catch(() => {});
    if (get.status !== 200) {
      await get.body?.cancel().catch(() => {});
      return { facts: null, status: null };
    }
    const image = await get.json() as Record<string, unknown>;
    const status = typeof image.status === 'string' ? image.status : null;
    return { facts: head.status === 200 ? this.facts(imageId, image, head) : null, status };
  }

  private facts(imageId: string, image: Record<string, unknown>, head: Response): ImageFacts | null {
    const size = image.size;
    const algo = image.os_hash_algo;
    const hash = image.os_hash_value;
    if (image.status !== 'active' || typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0
      || typeof algo !== 'string' || !HASH_ALGOS.has(algo) || typeof hash !== 'string' || !/^[0-9a-f]{16,256}$/.test(hash)) return null;
    if (Number(head.headers.get('content-length')) !== size) return null;
    return { id: imageId, size, algo, hash, checksum: typeof image.checksum === 'string' ? image.checksum : null };
  }
}

/** The headers of an upstream answer that a client of the cache sees as the upstream sent them. */
function passedHeaders(headers: Headers): Record<string, string> {
  const kept: Record<string, string> = {};
  for (const name of ['content-type', 'www-authenticate', 'x-openstack-request-id']) {
    const value = headers.get(name);
    if (value !== null) kept[name] = value;
  }
  return kept;
}

function tokenKey(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}
