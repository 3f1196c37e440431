/**
 * The one HTTP client PIR uses to reach URLs a user gave it (web-download now, webhooks later),
 * safe against server-side request forgery:
 *
 * - http and https only; no user:password@ in the URL; ports 80 and 443 unless allow-listed;
 * - IPv4 written any way but the canonical dotted quad (127.1, 0x7f000001, 2130706433,
 *   0177.0.0.1, %-encoded) is refused outright: WHATWG URL parsing would quietly turn it into
 *   an address, and a refusal is clearer than a guess;
 * - the host name is resolved once, EVERY address it resolves to is checked
 *   (address-policy.ts), and the connection is pinned to the first checked address through the
 *   socket's `lookup`, so a second, different DNS answer (rebinding) is never used;
 * - redirects are followed by hand (at most 5), each new URL checked from the start;
 * - a byte limit (Content-Length at once, then counted while streaming), a connect timeout,
 *   an idle timeout and a total deadline.
 *
 * PIR_EGRESS_ALLOWLIST entries (CIDRs, host names, host:port) exempt a destination from the
 * address and port rules, for private networks and tests.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { Transform, type Readable } from 'node:stream';
import { allowedByAddress, allowedByName, refusedAddress, type AllowEntry } from './address-policy.js';

export interface EgressSettings {
  allowList: AllowEntry[];
  /** Ports allowed without an allow-list entry. */
  ports: number[];
  maxRedirects: number;
  connectTimeoutMs: number;
  /** No byte received for this long → the transfer fails. */
  idleTimeoutMs: number;
  /** The whole transfer, redirects and body included. */
  totalTimeoutMs: number;
  /** What the requests are for, which the messages say (they reach the user who gave the URL). */
  purpose?: EgressPurpose;
}

export type EgressPurpose = 'download' | 'webhook';

/** The words of the messages, per purpose: a webhook's owner must not read about downloading images. */
const WORDING: Record<EgressPurpose, { scheme: string; credentials: string; refuses: string; ports: string; unfinished: string; unreachable: string; brokeOff: string; cutShort: string }> = {
  download: {
    scheme: 'Only http and https URLs can be downloaded',
    credentials: 'make the image downloadable without them, or upload it instead',
    refuses: 'PIR does not download from it',
    ports: 'PIR downloads only from port',
    unfinished: 'The download did not finish',
    unreachable: 'Could not download from',
    brokeOff: 'The download broke off',
    cutShort: 'The server closed the connection before the whole image arrived.',
  },
  webhook: {
    scheme: 'Only http and https URLs can receive webhooks',
    credentials: 'a receiver authenticates PIR by the webhook-signature header instead',
    refuses: 'PIR does not send webhooks to it',
    ports: 'PIR sends webhooks only to port',
    unfinished: 'The webhook request did not finish',
    unreachable: 'Could not reach',
    brokeOff: 'The answer broke off',
    cutShort: 'The receiver closed the connection before its whole answer arrived.',
  },
};

const wordsOf = (settings: EgressSettings) => WORDING[settings.purpose ?? 'download'];

export const DEFAULT_EGRESS: EgressSettings = {
  allowList: [],
  ports: [80, 443],
  maxRedirects: 5,
  connectTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
  totalTimeoutMs: 3_600_000,
};

export type EgressRefusalCode = 'uri_refused' | 'address_refused' | 'dns_failed' | 'too_many_redirects'
  | 'upstream_status' | 'too_large' | 'timeout' | 'connection_failed';

/** A request PIR would not make, or a transfer that failed; `message` says which and why. */
export class EgressError extends Error {
  constructor(readonly code: EgressRefusalCode, message: string) {
    super(message);
    this.name = 'EgressError';
  }
}

export interface CheckedUrl {
  url: URL;
  host: string;
  port: number;
  /** The host is an address literal (no DNS). */
  literal: boolean;
  /** Exempted by a host-name or host:port allow-list entry. */
  allowedByName: boolean;
}

type Resolver = (host: string) => Promise<LookupAddress[]>;

const systemResolver: Resolver = (host) => new Promise((resolve, reject) => {
  dnsLookup(host, { all: true, verbatim: true }, (err, addresses) => (err ? reject(err) : resolve(addresses)));
});

/** The host as the user wrote it (userinfo and port removed), before any normalisation. */
function rawHost(text: string): string | null {
  const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)/.exec(text.trim());
  if (!m) return null;
  const authority = m[1].slice(m[1].lastIndexOf('@') + 1);
  if (authority.startsWith('[')) return authority.slice(0, authority.indexOf(']') + 1);
  return authority.replace(/:[^:]*$/, '');
}

/**
 * Every check that needs no DNS: scheme, credentials, host form, literal addresses, port.
 * Throws EgressError('uri_refused' | 'address_refused').
 */
export function checkUrl(text: string, settings: EgressSettings): CheckedUrl {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    // Not its query: the message reaches error spans and logs, and a query may carry a token.
    const q = text.search(/[?#]/);
    throw new EgressError('uri_refused', `'${shorten(q < 0 ? text : `${text.slice(0, q)}?…`)}' is not a URL.`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new EgressError('uri_refused', `${wordsOf(settings).scheme} (got ${url.protocol.replace(/:$/, '')}).`);
  }
  if (url.username || url.password) {
    throw new EgressError('uri_refused', `URLs with credentials (user:password@) are refused; ${wordsOf(settings).credentials}.`);
  }
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (!host) throw new EgressError('uri_refused', 'The URL has no host.');
  const port = url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
  const literal = isIP(host) !== 0;
  if (isIP(host) === 4 && rawHost(text)?.toLowerCase() !== host) {
    throw new EgressError('uri_refused', `The host '${rawHost(text)}' is an IPv4 address in a shorthand or encoded form; write it as a plain dotted quad (${host}) or use a host name.`);
  }
  const byName = allowedByName(settings.allowList, host, port);
  if (literal && !byName && !allowedByAddress(settings.allowList, host)) {
    const why = refusedAddress(host);
    if (why) throw new EgressError('address_refused', `${host} is ${why}; ${wordsOf(settings).refuses}. (An operator can allow it with PIR_EGRESS_ALLOWLIST.)`);
  }
  // RFC 6761: localhost and *.localhost are the loopback interface whatever DNS says; refused at
  // the call, as a loopback literal is, unless the operator allowed the name or loopback.
  const name = host.toLowerCase().replace(/\.+$/, '');
  if (!literal && !byName && (name === 'localhost' || name.endsWith('.localhost'))
    && !allowedByAddress(settings.allowList, '127.0.0.1') && !allowedByAddress(settings.allowList, '::1')) {
    throw new EgressError('address_refused', `${host} names the loopback interface; ${wordsOf(settings).refuses}. (An operator can allow it with PIR_EGRESS_ALLOWLIST.)`);
  }
  const portExemptLater = !literal && settings.allowList.some((e) => e.kind === 'cidr');
  const portExemptNow = byName || (literal && allowedByAddress(settings.allowList, host));
  if (!settings.ports.includes(port) && !portExemptNow && !portExemptLater) throw portRefused(port, settings);
  return { url, host, port, literal, allowedByName: byName };
}

function portRefused(port: number, settings: EgressSettings): EgressError {
  return new EgressError('uri_refused', `Port ${port} is refused; ${wordsOf(settings).ports} ${settings.ports.join(' or ')}. (An operator can allow a host:port with PIR_EGRESS_ALLOWLIST.)`);
}

/** Resolves the host and checks every address; returns them (all checked), to connect to no other. */
export async function resolveChecked(target: CheckedUrl, settings: EgressSettings, resolver: Resolver = systemResolver): Promise<LookupAddress[]> {
  if (target.literal) return [{ address: target.host, family: isIP(target.host) }];
  let addresses: LookupAddress[];
  try {
    addresses = await resolver(target.host);
  } catch (error) {
    throw new EgressError('dns_failed', `The host ${target.host} could not be resolved (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}).`);
  }
  if (addresses.length === 0) throw new EgressError('dns_failed', `The host ${target.host} has no address.`);
  let allExemptByCidr = true;
  for (const { address } of addresses) {
    const exempt = target.allowedByName || allowedByAddress(settings.allowList, address);
    if (!allowedByAddress(settings.allowList, address)) allExemptByCidr = false;
    if (exempt) continue;
    const why = refusedAddress(address);
    // The class of address, not the address: the message reaches tenants (a failed import's
    // reason), who must not learn what the cloud's internal names resolve to.
    if (why) throw new EgressError('address_refused', `${target.host} resolves to ${why}; ${wordsOf(settings).refuses}. (An operator can allow it with PIR_EGRESS_ALLOWLIST.)`);
  }
  if (!settings.ports.includes(target.port) && !target.allowedByName && !allExemptByCidr) throw portRefused(target.port, settings);
  return addresses;
}

export interface EgressResponse {
  /** The URL that answered (after redirects). */
  url: string;
  status: number;
  /** Content-Length, when the server sent one. */
  contentLength: number | null;
  /** The answer's headers (webhooks read Retry-After). */
  headers: IncomingHttpHeaders;
  /** The body; errors with EgressError('too_large') past maxBytes, or 'timeout'. */
  body: Readable;
}

export interface GetOptions {
  /** The body may not exceed this many bytes. */
  maxBytes: number;
  signal?: AbortSignal;
}

/** Beyond GET (for webhook deliveries and the like): same checks, same pinning. */
export interface RequestOptions extends GetOptions {
  method?: 'GET' | 'HEAD' | 'POST' | 'PUT';
  headers?: Record<string, string>;
  /** A small request body, sent whole. */
  body?: Buffer;
  /** Follow redirects (default true); false returns the 3xx response. */
  followRedirects?: boolean;
  /** Return non-2xx responses instead of failing with 'upstream_status'. */
  anyStatus?: boolean;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export class EgressClient {
  constructor(
    readonly settings: EgressSettings,
    private readonly resolver: Resolver = systemResolver,
  ) {}

  /** Checks a URL without DNS (for an answer at request time). Throws EgressError. */
  check(text: string): CheckedUrl {
    return checkUrl(text, this.settings);
  }

  /** GET that follows redirects (each checked again) and answers once a 2xx response starts. */
  get(text: string, options: GetOptions): Promise<EgressResponse> {
    return this.request(text, { ...options, method: 'GET' });
  }

  /** Any request, with every check of the class comment applied to each hop. */
  async request(text: string, options: RequestOptions): Promise<EgressResponse> {
    const deadline = AbortSignal.timeout(this.settings.totalTimeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, deadline]) : deadline;
    let current = text;
    let method = options.method ?? 'GET';
    let body = options.body;
    for (let hop = 0; ; hop++) {
      const target = checkUrl(current, this.settings);
      const addresses = await resolveChecked(target, this.settings, this.resolver);
      const { response, failure } = await this.open(target, addresses, signal, method, options.headers ?? {}, body);
      const status = response.statusCode ?? 0;
      if (REDIRECTS.has(status) && options.followRedirects !== false) {
        response.destroy();
        const location = response.headers.location;
        if (!location) throw new EgressError('upstream_status', `${target.url.host} answered ${status} without a Location.`);
        if (hop >= this.settings.maxRedirects) throw new EgressError('too_many_redirects', `More than ${this.settings.maxRedirects} redirects; give the final URL.`);
        current = new URL(location, target.url).toString();
        // As browsers do: 303 (and 301/302 after a POST) continue as GET without the body.
        if (status === 303 || ((status === 301 || status === 302) && method === 'POST')) {
          method = 'GET';
          body = undefined;
        }
        continue;
      }
      if ((status < 200 || status > 299) && !options.anyStatus) {
        response.destroy();
        throw new EgressError('upstream_status', `${target.url.host} answered ${status} ${response.statusMessage ?? ''}`.trim() + '; check the URL.');
      }
      const lengthHeader = response.headers['content-length'];
      const contentLength = lengthHeader !== undefined && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : null;
      if (contentLength !== null && contentLength > options.maxBytes) {
        response.destroy();
        throw new EgressError('too_large', `The body at the URL is ${contentLength} bytes, more than the ${options.maxBytes} this PIR accepts.`);
      }
      return { url: target.url.toString(), status, contentLength, headers: response.headers, body: this.limited(response, options.maxBytes, signal, failure) };
    }
  }

  /**
   * One request to a checked URL, connected to the checked addresses and no others. `failure`
   * tells, once the body is streaming, whether a timeout of ours ended it.
   */
  private open(target: CheckedUrl, pinned: LookupAddress[], signal: AbortSignal, method: string, headers: Record<string, string>, body: Buffer | undefined): Promise<{ response: IncomingMessage; failure: () => EgressError | null }> {
    // The connection asks this `lookup` for the host's addresses: it only ever gets the checked
    // ones (all of them when it asks for all, to try each family in turn).
    const lookup: LookupFunction = (_host, opts, callback) => {
      if ((opts as { all?: boolean }).all) (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, pinned);
      else callback(null, pinned[0].address, pinned[0].family);
    };
    const requestFn = target.url.protocol === 'https:' ? httpsRequest : httpRequest;
    let failure: EgressError | null = null;
    return new Promise((resolve, reject) => {
      const fail = (error: EgressError) => { failure = error; req.destroy(); reject(error); };
      const req = requestFn(target.url, {
        method,
        lookup,
        agent: false, // a fresh connection: never one pooled to another address
        headers: { 'user-agent': 'PIR', accept: '*/*', 'accept-encoding': 'identity', ...headers, ...(body ? { 'content-length': String(body.length) } : {}) },
        signal,
      });
      const connectTimer = setTimeout(() => fail(new EgressError('timeout', `${target.url.host} did not accept a connection within ${this.settings.connectTimeoutMs} ms.`)), this.settings.connectTimeoutMs);
      req.once('socket', (socket) => {
        const connected = () => clearTimeout(connectTimer);
        if (!socket.connecting) connected();
        socket.once(target.url.protocol === 'https:' ? 'secureConnect' : 'connect', connected);
      });
      req.setTimeout(this.settings.idleTimeoutMs, () => fail(new EgressError('timeout', `${target.url.host} sent nothing for ${this.settings.idleTimeoutMs} ms.`)));
      req.once('response', (response) => {
        clearTimeout(connectTimer);
        resolve({ response, failure: () => failure });
      });
      req.once('error', (error) => {
        clearTimeout(connectTimer);
        if (signal.aborted) reject(new EgressError('timeout', `${wordsOf(this.settings).unfinished} within ${this.settings.totalTimeoutMs} ms, or was cancelled.`));
        else reject(new EgressError('connection_failed', `${wordsOf(this.settings).unreachable} ${target.url.host}: ${error.message}.`));
      });
      req.end(body);
    });
  }

  /** The body, failing past maxBytes and when the total deadline passes. */
  private limited(response: IncomingMessage, maxBytes: number, signal: AbortSignal, failure: () => EgressError | null): Readable {
    let received = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        received += chunk.length;
        if (received > maxBytes) return callback(new EgressError('too_large', `The image at the URL is larger than the ${maxBytes} bytes this PIR accepts.`));
        callback(null, chunk);
      },
    });
    const onAbort = () => counter.destroy(new EgressError('timeout', `${wordsOf(this.settings).unfinished} within ${this.settings.totalTimeoutMs} ms, or was cancelled.`));
    signal.addEventListener('abort', onAbort, { once: true });
    response.once('error', (error) => counter.destroy(failure() ?? (error instanceof EgressError ? error : new EgressError('connection_failed', `${wordsOf(this.settings).brokeOff}: ${error.message}.`))));
    response.once('aborted', () => counter.destroy(failure() ?? new EgressError('connection_failed', wordsOf(this.settings).cutShort)));
    counter.once('close', () => {
      signal.removeEventListener('abort', onAbort);
      response.destroy();
    });
    response.pipe(counter);
    return counter;
  }
}

function shorten(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}
