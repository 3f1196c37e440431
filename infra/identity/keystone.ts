/**
 * Authentication against OpenStack Keystone, as keystonemiddleware's auth_token does: PIR logs
 * in with its own service user (password auth, token renewed before it expires) and validates
 * each request's X-Auth-Token with GET /v3/auth/tokens (X-Subject-Token). Validations are
 * cached by the token's SHA-256 digest, bounded in number and never past the token's expiry;
 * refusals are cached briefly so a flood of bad tokens does not become a flood on Keystone.
 * Keystone unreachable (or refusing PIR's own credentials) is PIR's problem: 503, not 401.
 */
import type { Logger } from 'pino';
import { tokenInvalid, type Authenticator } from '../../core/authenticator.js';
import type { Caller } from '../../core/caller.js';
import { PirError } from '../../core/errors.js';
import { ExpiringLru } from './expiring-lru.js';
import { tokenDigest } from './tokens-file.js';

export interface KeystoneSettings {
  /** Keystone's identity v3 URL, e.g. http://keystone:5000/v3. */
  url: string;
  username: string;
  password: string;
  projectName: string;
  userDomainName: string;
  projectDomainName: string;
  /** Most validations kept at once. */
  cacheSize: number;
  /** Longest a validation is trusted (keystonemiddleware's token_cache_time: 300 s). */
  cacheSeconds: number;
  /** How long a refused token stays refused without asking Keystone again. */
  negativeCacheSeconds: number;
  timeoutSeconds: number;
}

export interface KeystoneStats { validations: number; cacheHits: number; serviceLogins: number }

/** Renew PIR's own token this long before it expires (keystoneauth's stale duration). */
const SERVICE_TOKEN_MARGIN_MS = 120_000;
/** Fernet tokens are ~180-250 characters; anything far longer is not worth sending on. */
const MAX_TOKEN_LENGTH = 8192;
/** Keystone's tokens are visible ASCII; anything else (tabs, Latin-1) is refused here, not sent on. */
const TOKEN_CHARS = /^[\x21-\x7e]+$/;

interface ServiceToken { token: string; expiresAt: number }

export class KeystoneAuthenticator implements Authenticator {
  readonly challenge: string;
  readonly stats: KeystoneStats = { validations: 0, cacheHits: 0, serviceLogins: 0 };
  private readonly cache: ExpiringLru<Caller | null>;
  private readonly inFlight = new Map<string, Promise<Caller>>();
  private serviceToken: ServiceToken | null = null;
  private serviceLogin: Promise<ServiceToken> | null = null;
  private lastProblem = { message: '', at: 0 };

  constructor(private readonly settings: KeystoneSettings, private readonly log: Logger, private readonly now: () => number = Date.now) {
    this.cache = new ExpiringLru(settings.cacheSize, now);
    // keystonemiddleware's challenge: where a client should go to get a token.
    this.challenge = `Keystone uri='${settings.url}'`;
  }

  /** Whether the last service login was refused for its credentials (not an outage): a configuration mistake. */
  credentialsRefused = false;

  /** PIR's own service token, obtained now if it has none that is fresh (readiness; start-up). */
  async ready(): Promise<void> {
    await this.getServiceToken();
  }

  async authenticate(token: string): Promise<Caller> {
    if (token.length > MAX_TOKEN_LENGTH) throw tokenInvalid(`The X-Auth-Token is longer than ${MAX_TOKEN_LENGTH} characters; no Keystone token is.`);
    if (!TOKEN_CHARS.test(token)) throw tokenInvalid('The X-Auth-Token holds characters no Keystone token has (spaces, control or non-ASCII characters).');
    const key = tokenDigest(token);
    const cached = this.cache.get(key);
    if (cached !== undefined) {
      this.stats.cacheHits++;
      if (cached === null) throw tokenInvalid();
      return cached;
    }
    // Concurrent requests with the same token share one validation.
    let pending = this.inFlight.get(key);
    if (!pending) {
      pending = this.validate(key, token).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, pending);
    }
    return pending;
  }

  /** When the cached validation of token runs out (ms since the epoch), if it is cached. */
  cachedUntil(token: string): number | undefined {
    return this.cache.expiresAt(tokenDigest(token));
  }

  async close(): Promise<void> {
    this.inFlight.clear();
  }

  private async validate(key: string, token: string): Promise<Caller> {
    this.stats.validations++;
    let response = await this.askKeystone(token, await this.getServiceToken());
    if (response.status === 401) {
      // PIR's own token was revoked or expired early: log in again, once.
      await response.body?.cancel();
      this.serviceToken = null;
      response = await this.askKeystone(token, await this.getServiceToken());
    }
    if (response.status === 404) {
      await response.body?.cancel();
      this.cache.set(key, null, this.now() + this.settings.negativeCacheSeconds * 1000);
      throw tokenInvalid();
    }
    if (response.status === 401 || response.status === 403) {
      await response.body?.cancel();
      throw this.unavailable(`Keystone refused PIR's service user '${this.settings.username}' permission to validate tokens (HTTP ${response.status}); the operator must give it the service or admin role (PIR_KEYSTONE_USERNAME, PIR_KEYSTONE_PROJECT).`);
    }
    if (response.status !== 200) {
      await response.body?.cancel();
      throw this.unavailable(`Keystone answered HTTP ${response.status} when asked to validate a token; retry later.`);
    }
    const { caller, expiresAt } = parseValidation(await this.json(response));
    // Cache until the sooner of: the token's expiry, the cache time.
    this.cache.set(key, caller, Math.min(expiresAt, this.now() + this.settings.cacheSeconds * 1000));
    return caller;
  }

  private askKeystone(token: string, service: string): Promise<Response> {
    return this.request(`${this.settings.url}/auth/tokens?nocatalog`, {
      method: 'GET',
      headers: { 'X-Auth-Token': service, 'X-Subject-Token': token, Accept: 'application/json' },
    });
  }

  private async getServiceToken(): Promise<string> {
    if (this.serviceToken && this.serviceToken.expiresAt - SERVICE_TOKEN_MARGIN_MS > this.now()) return this.serviceToken.token;
    this.serviceLogin ??= this.logIn().finally(() => { this.serviceLogin = null; });
    this.serviceToken = await this.serviceLogin;
    return this.serviceToken.token;
  }

  private async logIn(): Promise<ServiceToken> {
    const s = this.settings;
    this.stats.serviceLogins++;
    const response = await this.request(`${s.url}/auth/tokens?nocatalog`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({
        auth: {
          identity: { methods: ['password'], password: { user: { name: s.username, domain: { name: s.userDomainName }, password: s.password } } },
          scope: { project: { name: s.projectName, domain: { name: s.projectDomainName } } },
        },
      }),
    });
    this.credentialsRefused = response.status === 401;
    if (response.status !== 201) {
      await response.body?.cancel();
      const why = response.status === 401
        ? `Keystone refused PIR's service credentials (user '${s.username}' in domain '${s.userDomainName}', project '${s.projectName}'); check PIR_KEYSTONE_USERNAME, PIR_KEYSTONE_PASSWORD and PIR_KEYSTONE_PROJECT.`
        : `Keystone answered HTTP ${response.status} to PIR's service login; retry later.`;
      throw this.unavailable(why);
    }
    const token = response.headers.get('x-subject-token');
    const body = await this.json(response) as { token?: { expires_at?: unknown } };
    const expiresAt = parseTime(body.token?.expires_at);
    if (!token || expiresAt === null) throw this.unavailable('Keystone answered PIR\'s service login without a token or its expiry.');
    this.log.info({ keystone: s.url, user: s.username, project: s.projectName, expires_at: new Date(expiresAt).toISOString() }, 'keystone: service token obtained');
    return { token, expiresAt };
  }

  private async request(url: string, init: RequestInit): Promise<Response> {
    try {
      return await fetch(url, { ...init, signal: AbortSignal.timeout(this.settings.timeoutSeconds * 1000) });
    } catch (error) {
      const cause = (error as Error & { cause?: { code?: string; message?: string } }).cause;
      const why = (error as Error).name === 'TimeoutError'
        ? `did not answer within ${this.settings.timeoutSeconds} s`
        : `is unreachable (${cause?.code ?? cause?.message ?? (error as Error).message})`;
      throw this.unavailable(`Keystone at ${this.settings.url} ${why}; PIR cannot check tokens until it is back. Retry later.`);
    }
  }

  private async json(response: Response): Promise<unknown> {
    try {
      return await response.json();
    } catch {
      throw this.unavailable('Keystone answered with a body that is not JSON; retry later.');
    }
  }

  private unavailable(message: string): PirError {
    // During an outage every request fails the same way: one error line per problem every 10 s.
    const now = Date.now();
    if (message !== this.lastProblem.message || now - this.lastProblem.at >= 10_000) {
      this.lastProblem = { message, at: now };
      this.log.error({ keystone: this.settings.url, problem: message }, 'keystone: cannot validate tokens');
    }
    return new PirError('unavailable', 'identity_unavailable', message);
  }
}

/** The caller and expiry in a GET /v3/auth/tokens answer. */
export function parseValidation(body: unknown): { caller: Caller; expiresAt: number } {
  const token = (body as { token?: Record<string, any> } | null)?.token;
  const expiresAt = parseTime(token?.expires_at);
  const userId = token?.user?.id;
  if (!token || typeof userId !== 'string' || expiresAt === null || !Array.isArray(token.roles)) {
    throw new PirError('unavailable', 'identity_unavailable', 'Keystone\'s token validation lacked the user, roles or expiry; retry later.');
  }
  const projectId = token.project?.id;
  if (typeof projectId !== 'string') {
    throw new PirError('forbidden', 'token_unscoped', 'The X-Auth-Token is not scoped to a project (a system- or domain-scoped token); images belong to projects. Get a project-scoped token (e.g. set OS_PROJECT_NAME) and retry.');
  }
  const roles = token.roles.map((r: { name?: unknown }) => r?.name).filter((n: unknown): n is string => typeof n === 'string');
  return { caller: Object.freeze({ project_id: projectId, user_id: userId, roles }), expiresAt };
}

/** Keystone's "2026-12-02T01:17:12.000000Z" (microseconds) as ms since the epoch. */
function parseTime(value: unknown): number | null {
  if (typeof value !== 'string') return null;
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? ms : null;
}
