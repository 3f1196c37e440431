/**
 * What PIR does at the HTTP layer before and around the routes: which request ids it trusts,
 * what it writes to the logs about a URL, how it answers `Expect: 100-continue`, and which
 * transfer codings it takes.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { randomUUID } from 'node:crypto';

/** Glance's request id form; anything else a client sends is replaced, never echoed or logged. */
const REQUEST_ID = /^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function requestIdOf(req: IncomingMessage): string {
  const given = req.headers['x-openstack-request-id'];
  return typeof given === 'string' && REQUEST_ID.test(given) ? given.toLowerCase() : `req-${randomUUID()}`;
}

/** Query parameters whose values are secrets (a token put in the URL must not reach the logs). */
const SECRET_PARAM = /token|auth|passw|secret|key|signature|credential|session/i;

/** Glance's own list parameters that match SECRET_PARAM by name but carry no secret. */
const PUBLIC_PARAMS = new Set(['sort_key']);

/**
 * A share link's path carries its secret (/v2/shared/{token}), however the client spelled it:
 * escaped letters (`/v2/%73hared/…`, `/%762/…`), a version (`/v2.17/…`), doubled slashes, or no
 * version at all (Glance's vendor Accept type, which puts /v2 in front of what was sent), dot
 * segments and `;parameters` all reach the route or are worth hiding.
 */
const SHARED_PATH = /^\/+(?:v2(?:\.\d+)?\/+)*shared\//i;

function isSharedPath(path: string): boolean {
  // Byte by byte, so that a malformed escape elsewhere cannot keep the rest from being read.
  const decoded = path.replace(/%([0-9a-f]{2})/gi, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
  return SHARED_PATH.test(decoded) || SHARED_PATH.test(resolvedSegments(decoded));
}

/**
 * The path as a server or proxy that resolves it would see it: `;parameters` dropped from each
 * segment, `.` and `..` segments resolved (`/v2/images/../shared/…`, `/v2/shared;x/…`).
 */
function resolvedSegments(path: string): string {
  const out: string[] = [];
  for (const raw of path.split('/')) {
    const segment = raw.split(';')[0]!;
    if (segment === '.') continue;
    if (segment !== '..') out.push(segment);
    else if (out.length > 1) out.pop(); // never above the root's empty segment
  }
  return out.join('/');
}

export function redactUrl(url: string): string {
  const end = url.indexOf('?');
  if (isSharedPath(end < 0 ? url : url.slice(0, end))) url = `/v2/shared/[REDACTED]${end < 0 ? '' : url.slice(end)}`;
  const q = url.indexOf('?');
  if (q < 0) return url;
  const redacted = url.slice(q + 1).split('&').map((pair) => {
    const eq = pair.indexOf('=');
    const name = eq < 0 ? pair : pair.slice(0, eq);
    let decoded = name;
    try { decoded = decodeURIComponent(name.replace(/\+/g, ' ')); } catch { /* logged as sent */ }
    return eq >= 0 && SECRET_PARAM.test(decoded) && !PUBLIC_PARAMS.has(decoded) ? `${name}=[REDACTED]` : pair;
  });
  return `${url.slice(0, q)}?${redacted.join('&')}`;
}

/** The `req` log serializer: Fastify's fields, with secrets in the query string redacted. */
export function requestLogView(req: { method?: string; url?: string; host?: string; ip?: string; socket?: { remotePort?: number } }) {
  return { method: req.method, url: redactUrl(req.url ?? ''), host: req.host, remoteAddress: req.ip, remotePort: req.socket?.remotePort };
}

const EXPECTS_CONTINUE = Symbol('pir.expectsContinue');
const UNMET_EXPECTATION = Symbol('pir.unmetExpectation');
type Marked = IncomingMessage & { [EXPECTS_CONTINUE]?: boolean; [UNMET_EXPECTATION]?: boolean };
type ExpectEvent = 'checkContinue' | 'checkExpectation';

/**
 * Node answers `Expect` itself, before any route has looked at the request: `100-continue` with
 * `100 Continue`, anything else with an empty 417. With these listeners the request goes to the
 * app instead, marked: a 100-continue runs its checks first (token, state), only a route that will
 * read the body says "continue" (sendContinue), and a refusal goes out as the final answer; any
 * other expectation gets its 417 in PIR's shape (unmetExpectation).
 */
export function deferExpect(server: { on(event: ExpectEvent, l: (req: IncomingMessage, res: ServerResponse) => void): unknown; emit(event: 'request', req: IncomingMessage, res: ServerResponse): boolean }): void {
  const handOver = (event: ExpectEvent, mark: typeof EXPECTS_CONTINUE | typeof UNMET_EXPECTATION) => server.on(event, (req, res) => {
    (req as Marked)[mark] = true;
    server.emit('request', req, res);
  });
  handOver('checkContinue', EXPECTS_CONTINUE);
  handOver('checkExpectation', UNMET_EXPECTATION);
}

/** Tells a client waiting on `Expect: 100-continue` to send the body (once). */
export function sendContinue(req: IncomingMessage, res: ServerResponse): void {
  const r = req as Marked;
  if (!r[EXPECTS_CONTINUE]) return;
  r[EXPECTS_CONTINUE] = false;
  if (!res.headersSent && !res.writableEnded) res.writeContinue();
}

/**
 * The request's Transfer-Encoding when it names a coding other than chunked (`gzip, chunked`),
 * else null. Node's parser takes off the chunking and hands the rest of the coded bytes on as the
 * body, so a route would store gzip bytes as the image. A server that does not understand a
 * transfer coding answers 501 (RFC 9112 §6.1).
 */
export function unsupportedTransferCoding(req: IncomingMessage): string | null {
  const header = req.headers['transfer-encoding'];
  if (header === undefined) return null;
  const codings = header.split(',').map((c) => c.trim().toLowerCase()).filter((c) => c.length > 0);
  return codings.every((c) => c === 'chunked') ? null : header;
}

/** A Content-Type header's media type, lower-cased, without parameters ('' when absent). */
export function mediaTypeOf(header: string | undefined): string {
  return (header ?? '').split(';')[0]!.trim().toLowerCase();
}

/** Whether the request's body (if any) has been read to its end. */
export function bodyConsumed(req: IncomingMessage): boolean {
  return req.complete || req.readableEnded;
}

/** True while a client that sent `Expect: 100-continue` still waits to be told to send its body. */
export function awaitsContinue(req: IncomingMessage): boolean {
  return (req as Marked)[EXPECTS_CONTINUE] === true;
}

/** How much of a body PIR answered without wanting it goes on reading and discarding. */
export interface RefusedBodyLinger {
  ms: number;
  bytes: number;
}

const LINGERING = Symbol('pir.lingering');
type Lingering = Socket & { [LINGERING]?: boolean };

/** True while the socket carries the rest of a body whose request was answered already. */
export function isLingering(socket: Socket): boolean {
  return (socket as Lingering)[LINGERING] === true;
}

/**
 * For a request answered while its body is still arriving: reads and discards the rest of the
 * body, up to `linger.bytes` or for `linger.ms`, then closes the connection if the body has not
 * ended (nginx's lingering close). Clients that send the whole body before reading the answer
 * (the glance CLI, python-requests) otherwise hit a reset on their next write and show
 * "Broken pipe" instead of the 401, 409 or 413 and its reason. A body that ends in time leaves
 * the connection reusable. Called as the answer is sent: reading starts now, so that Node does
 * not dump the body itself (a dumped body can no longer be counted). Settles once the body has
 * ended or the connection is closed.
 */
export function lingerOnRefusedBody(req: IncomingMessage, linger: RefusedBodyLinger): Promise<void> {
  if (bodyConsumed(req) || req.destroyed) return Promise.resolve();
  const socket = req.socket as Lingering;
  socket[LINGERING] = true;
  return new Promise((resolve) => {
    let read = 0;
    const cutOff = () => socket.destroy();
    const timer = setTimeout(cutOff, linger.ms);
    const settle = () => {
      clearTimeout(timer);
      socket[LINGERING] = false;
      resolve();
    };
    req.once('end', settle);
    socket.once('close', settle);
    // A route may have read part of the body and stopped (a 413 mid-stream): whatever it left
    // listening goes, and the rest flows into the counter.
    req.removeAllListeners('readable');
    req.removeAllListeners('data');
    req.on('data', (chunk: Buffer) => {
      read += chunk.length;
      if (read > linger.bytes) cutOff();
    });
    req.resume();
  });
}

/** Bodies that stream (image data: uploads, stage, tus), with their own idle rule instead of a deadline. */
const STREAMED_BODY_TYPES = new Set(['application/octet-stream', 'application/offset+octet-stream']);

/** True when the request carries a body Fastify reads whole before the route runs (JSON and the like). */
export function hasBufferedBody(req: IncomingMessage): boolean {
  if (STREAMED_BODY_TYPES.has(mediaTypeOf(req.headers['content-type']))) return false;
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * Why a request Node's parser took is still not valid HTTP/1.x, or null. Node answers a missing
 * Host with an empty 400 of its own (the server runs with requireHostHeader: false so that PIR
 * answers in its shape), keeps only the first of several Host lines, and serves an `HTTP/2.0`
 * request line as HTTP/1.1. RFC 9112 §3.2: a missing Host on HTTP/1.1, or more than one Host
 * line, MUST be a 400.
 */
export function malformedFraming(req: IncomingMessage): string | null {
  if (req.httpVersionMajor !== 1) return `its request line says HTTP/${req.httpVersion.slice(0, 8)}; PIR speaks HTTP/1.1 (and 1.0)`;
  let hosts = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]!.toLowerCase() === 'host') hosts++;
  if (hosts > 1) return `it has ${hosts} Host header lines; send one`;
  if (hosts === 0 && req.httpVersionMinor >= 1) return 'an HTTP/1.1 request must have a Host header';
  return null;
}

/** The request's Expect header when PIR cannot meet it (anything but 100-continue), else null. */
export function unmetExpectation(req: IncomingMessage): string | null {
  return (req as Marked)[UNMET_EXPECTATION] ? String(req.headers.expect ?? '') : null;
}

/**
 * True when the URL's query string holds a malformed %-escape (`%zz`, a lone `%`, bytes that are
 * not UTF-8). The router refuses these in the path (400 bad_url), but the query parser takes them
 * literally, and a list's links would then re-encode them into a different query.
 */
export function hasMalformedQuery(url: string): boolean {
  const q = url.indexOf('?');
  if (q < 0 || !url.includes('%', q)) return false;
  try {
    decodeURIComponent(url.slice(q + 1));
    return false;
  } catch {
    return true;
  }
}
