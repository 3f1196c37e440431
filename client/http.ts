/**
 * The HTTP layer: node:http(s) with a keep-alive agent, JSON calls that return the status and
 * the parsed body (never throwing on an HTTP status), and raw streaming requests for image bytes.
 */
import http, { type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import { TransportError } from './errors.js';

export interface RawResponse<T = any> {
  status: number;
  headers: Record<string, string>;
  body: T;
}

export type Headers = Record<string, string>;

/**
 * How long an unused keep-alive connection is kept for the next request (Node's own default agent
 * keeps 5 s). A server closes an idle connection after its keep-alive timeout (PIR's 65 s, many
 * servers' 5 s); a request sent on it just as it closes meets a reset (ECONNRESET) before any
 * answer, so the client lets it go first: after this long, or one second before the server's
 * `Keep-Alive: timeout=N` hint when that is shorter (Node's agent applies the hint once a timeout is set).
 */
export const FREE_SOCKET_IDLE_MS = 4_000;

const agents = {
  'http:': new http.Agent({ keepAlive: true, timeout: FREE_SOCKET_IDLE_MS }),
  'https:': new https.Agent({ keepAlive: true, timeout: FREE_SOCKET_IDLE_MS }),
};

/** How long a connection may carry nothing either way before the request fails (glanceclient's --timeout default). */
export const DEFAULT_IDLE_TIMEOUT_MS = 600_000;

/** The cause of a TransportError when the server went silent for longer than the idle timeout. */
export class IdleTimeoutError extends Error {
  override name = 'IdleTimeoutError';
  readonly code = 'ETIMEDOUT';
  constructor(readonly ms: number) {
    super(`nothing was sent or received for ${ms / 1000} s`);
  }
}

/**
 * The Image API's base URL without a trailing version segment (/v2, /v2.1: what a catalog
 * endpoint or a copied URL may end in), as glanceclient's strip_version: every call adds /v2.
 */
export function withoutVersion(url: string): string {
  return url.replace(/\/+$/, '').replace(/\/v\d+(\.\d+)?$/i, '');
}

export interface TransportOptions {
  /** Fail a request whose connection is silent this long (0: wait forever). */
  idleTimeoutMs?: number;
  /** Who answers there, for the errors' messages (default PIR). */
  service?: 'PIR' | 'Keystone';
}

export class Transport {
  readonly baseUrl: string;
  private readonly idleTimeoutMs: number;
  private readonly service: 'PIR' | 'Keystone';

  constructor(baseUrl: string, readonly token: string | null, opts: TransportOptions = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.service = opts.service ?? 'PIR';
    // Node's timers hold at most 2^31-1 ms; a longer wait would fire at once.
    this.idleTimeoutMs = Math.min(opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS, 2 ** 31 - 1);
  }

  /** A path (`/v2/...`) or an absolute URL the server handed back. */
  url(path: string): URL {
    return /^https?:\/\//.test(path) ? new URL(path) : new URL(this.baseUrl + path);
  }

  /** Starts a request; the caller writes (or ends) it and gets the response from `response`. */
  open(method: string, path: string, headers: Headers = {}): { req: http.ClientRequest; response: Promise<IncomingMessage>; url: URL } {
    const url = this.url(path);
    const lib = url.protocol === 'https:' ? https : http;
    const all: OutgoingHttpHeaders = { ...(this.token ? { 'x-auth-token': this.token } : {}), ...headers };
    const req = lib.request(url, { method, headers: all, agent: agents[url.protocol as 'http:' | 'https:'] });
    // A server that accepted the connection and then never answers (or stalls mid-body) must not
    // hold the command forever; the socket's inactivity is what counts, so long transfers go on.
    const idle = this.idleTimeoutMs;
    if (idle > 0) req.setTimeout(idle, () => req.destroy(new IdleTimeoutError(idle)));
    const response = new Promise<IncomingMessage>((resolve, reject) => {
      req.once('response', resolve);
      req.once('error', (error) => reject(new TransportError(url.origin, error, this.service)));
    });
    response.catch(() => {}); // callers that never await it (a write failed first) must not crash the process
    return { req, response, url };
  }

  /** A JSON (or empty) request; resolves with whatever status the server answered. */
  async call<T = any>(method: string, path: string, body?: unknown, headers: Headers = {}): Promise<RawResponse<T>> {
    const hasBody = body !== undefined;
    const payload = hasBody ? Buffer.from(JSON.stringify(body)) : null;
    const { req, response } = this.open(method, path, {
      accept: 'application/json',
      ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
      ...headers,
    });
    req.end(payload ?? undefined);
    return readResponse<T>(await response);
  }
}

/** Reads a (small) response body: JSON when it parses, else text. */
export async function readResponse<T = any>(res: IncomingMessage): Promise<RawResponse<T>> {
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  let body: unknown = text;
  try { body = text ? JSON.parse(text) : null; } catch { /* not JSON: keep the text */ }
  return { status: res.statusCode ?? 0, headers: flatHeaders(res), body: body as T };
}

export function flatHeaders(res: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(res.headers)) if (value !== undefined) out[key] = Array.isArray(value) ? value.join(', ') : value;
  return out;
}
