/**
 * Authentication from a tokens file (the embedded default): PIR_TOKENS_FILE names a JSON file
 * {"tokens": [{"token", "project_id", "user_id", "roles"}]}, re-read when it changes; the admin
 * token (PIR_ADMIN_TOKEN or the generated one) always stands for project admin, user admin.
 *
 * Tokens are kept only as SHA-256 digests: a lookup hashes the presented token and finds the
 * digest in a map, so the time taken does not depend on how much of a real token was guessed.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';
import { tokenInvalid, withImpliedRoles, type Authenticator } from '../../core/authenticator.js';
import type { Caller } from '../../core/caller.js';

/** Roles a tokens file may grant: Glance's three, and `service` (service users such as nova and cinder: the locations API). */
export const FILE_ROLES = ['admin', 'member', 'reader', 'service'] as const;
const MAX_TOKEN_LENGTH = 4096;
const MAX_ID_LENGTH = 255;
/** Visible ASCII only: a token travels in an HTTP header; ids end up in logs and documents. */
const VISIBLE = /^[\x21-\x7e]+$/;
/** A backstop for file systems where fs.watch misses changes (network mounts, some containers). */
const POLL_MS = 2000;
/** Editors write in bursts (truncate, write, rename): wait for the burst to end. */
const SETTLE_MS = 50;

export class TokensFileError extends Error {}

/** Digest under which a token is kept and looked up. */
export const tokenDigest = (token: string) => createHash('sha256').update(token, 'utf8').digest('base64');

/**
 * Parses and strictly validates a tokens file's text: unknown keys, missing fields, unknown
 * roles and duplicate tokens are refused with a message naming the entry (never the token).
 */
export function parseTokensFile(text: string): Map<string, Caller> {
  let doc: unknown;
  try { doc = JSON.parse(text); } catch (error) {
    throw new TokensFileError(`not valid JSON (${(error as Error).message})`);
  }
  if (!isObject(doc)) throw new TokensFileError('the file must hold one JSON object: {"tokens": [...]}');
  unknownKeys(doc, ['tokens'], 'the top-level object');
  if (!Array.isArray(doc.tokens)) throw new TokensFileError('"tokens" must be an array of {"token", "project_id", "user_id", "roles"} objects');
  const callers = new Map<string, Caller>();
  const firstIndex = new Map<string, number>();
  doc.tokens.forEach((entry: unknown, i: number) => {
    const at = `tokens[${i}]`;
    if (!isObject(entry)) throw new TokensFileError(`${at} must be an object with "token", "project_id", "user_id" and "roles"`);
    unknownKeys(entry, ['token', 'project_id', 'user_id', 'roles'], at);
    const token = visibleString(entry.token, `${at}.token`, MAX_TOKEN_LENGTH);
    const project_id = visibleString(entry.project_id, `${at}.project_id`, MAX_ID_LENGTH);
    const user_id = visibleString(entry.user_id, `${at}.user_id`, MAX_ID_LENGTH);
    if (!Array.isArray(entry.roles) || entry.roles.length === 0) {
      throw new TokensFileError(`${at}.roles must be a non-empty array of ${FILE_ROLES.join(', ')}`);
    }
    entry.roles.forEach((role: unknown, r: number) => {
      if (typeof role !== 'string' || !(FILE_ROLES as readonly string[]).includes(role)) {
        throw new TokensFileError(`${at}.roles[${r}] is ${JSON.stringify(role)}; a role is one of ${FILE_ROLES.join(', ')}`);
      }
      if (entry.roles.indexOf(role) !== r) throw new TokensFileError(`${at}.roles lists "${role}" twice`);
    });
    const digest = tokenDigest(token);
    const earlier = firstIndex.get(digest);
    if (earlier !== undefined) throw new TokensFileError(`${at}.token is the same token as tokens[${earlier}].token; each token must be unique`);
    firstIndex.set(digest, i);
    callers.set(digest, Object.freeze({ project_id, user_id, roles: withImpliedRoles(entry.roles as string[]) }));
  });
  return callers;
}

const ADMIN_CALLER: Caller = Object.freeze({ project_id: 'admin', user_id: 'admin', roles: withImpliedRoles(['admin']) });

export interface TokensFileOptions {
  /** Null: only the admin token is accepted. */
  path: string | null;
  adminToken: string;
  log: Logger;
}

interface Signature { mtimeMs: number; ctimeMs: number; size: number; ino: number }

export class TokensFileAuthenticator implements Authenticator {
  readonly challenge = null;
  private callers = new Map<string, Caller>();
  private readonly adminDigest: string;
  private readonly adminDigestBytes: Buffer;
  private signature: Signature | null = null;
  private watcher: FSWatcher | null = null;
  private poller: NodeJS.Timeout | null = null;
  private settleTimer: NodeJS.Timeout | null = null;
  private checking: Promise<void> = Promise.resolve();
  private reportedMissing = false;

  private constructor(private readonly options: TokensFileOptions) {
    this.adminDigest = tokenDigest(options.adminToken);
    this.adminDigestBytes = Buffer.from(this.adminDigest, 'base64');
  }

  /** Loads the file (a bad one throws TokensFileError: start-up stops) and watches it. */
  static async open(options: TokensFileOptions): Promise<TokensFileAuthenticator> {
    const auth = new TokensFileAuthenticator(options);
    if (options.path) {
      const { callers, signature } = await auth.load(options.path);
      auth.install(callers, signature);
      auth.watch(options.path);
      // Like ssh with a private key: the tokens are secrets, say so when anyone may read them.
      if (((await stat(options.path)).mode & 0o007) !== 0) {
        options.log.warn({ path: options.path }, 'tokens file: other users may read or write it; chmod 600 it (or 640 for a group)');
      }
    }
    return auth;
  }

  async authenticate(token: string): Promise<Caller> {
    const digest = tokenDigest(token);
    if (timingSafeEqual(Buffer.from(digest, 'base64'), this.adminDigestBytes)) return ADMIN_CALLER;
    const caller = this.callers.get(digest);
    if (!caller) throw tokenInvalid('The X-Auth-Token is not valid for this PIR; ask the operator for a token (PIR_TOKENS_FILE).');
    return caller;
  }

  /** How many tokens the file currently grants (the admin token not counted). */
  get size(): number { return this.callers.size; }

  /** Re-reads the file if it changed since the last good or bad read; resolves when done. */
  checkForChanges(): Promise<void> {
    this.checking = this.checking.then(() => this.reloadIfChanged(), () => this.reloadIfChanged());
    return this.checking;
  }

  async close(): Promise<void> {
    this.watcher?.close();
    if (this.poller) clearInterval(this.poller);
    if (this.settleTimer) clearTimeout(this.settleTimer);
    this.watcher = this.poller = this.settleTimer = null;
    await this.checking.catch(() => {});
  }

  private async load(path: string): Promise<{ callers: Map<string, Caller>; signature: Signature }> {
    let text: string;
    let signature: Signature;
    let mode: number;
    try {
      const info = await stat(path);
      signature = signatureOf(info);
      mode = info.mode;
      text = await readFile(path, 'utf8');
    } catch (error) {
      throw new TokensFileError(`${path}: cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    }
    // Re-read while PIR runs: whoever may write it may grant themselves the admin role.
    if ((mode & 0o002) !== 0) {
      throw new TokensFileError(`${path} has mode ${(mode & 0o777).toString(8).padStart(4, '0')}: any user of this machine may write it and grant themselves any role; run: chmod 600 ${path} (or 640 for a group)`);
    }
    try {
      const callers = parseTokensFile(text);
      if (callers.has(this.adminDigest)) throw new TokensFileError('an entry holds the admin token (PIR_ADMIN_TOKEN); give it another token');
      return { callers, signature };
    } catch (error) {
      throw new TokensFileError(`${path}: ${(error as Error).message}`);
    }
  }

  private install(callers: Map<string, Caller>, signature: Signature): void {
    this.callers = callers;
    this.signature = signature;
  }

  private watch(path: string): void {
    // Watch the directory, not the file: editors that save by renaming a new file over the old
    // one would leave a file watcher on the deleted inode.
    const name = basename(path);
    try {
      this.watcher = watch(dirname(path), { persistent: false }, (_event, filename) => {
        if (filename === null || filename.toString() === name) this.settleThenCheck();
      });
      this.watcher.on('error', (error) => this.options.log.warn({ err: error, path }, 'tokens file: watching failed; falling back to polling'));
    } catch (error) {
      this.options.log.warn({ err: error, path }, 'tokens file: cannot watch its directory; polling only');
    }
    this.poller = setInterval(() => void this.checkForChanges(), POLL_MS);
    this.poller.unref();
  }

  private settleThenCheck(): void {
    if (this.settleTimer) clearTimeout(this.settleTimer);
    this.settleTimer = setTimeout(() => { this.settleTimer = null; void this.checkForChanges(); }, SETTLE_MS);
    this.settleTimer.unref();
  }

  private async reloadIfChanged(): Promise<void> {
    const path = this.options.path!;
    const log = this.options.log;
    let current: Signature;
    try {
      current = signatureOf(await stat(path));
    } catch {
      // Mid-rename, or deleted: keep the last good set; say so once.
      if (!this.reportedMissing) log.error({ path }, 'tokens file: missing; keeping the last good set of tokens');
      this.reportedMissing = true;
      return;
    }
    this.reportedMissing = false;
    if (this.signature && sameSignature(current, this.signature)) return;
    try {
      const { callers, signature } = await this.load(path);
      this.install(callers, signature);
      log.info({ path, tokens: callers.size }, 'tokens file: reloaded');
    } catch (error) {
      // Remember the bad version so it is reported once, not on every poll.
      this.signature = current;
      log.error({ path, problem: (error as Error).message }, 'tokens file: refused the changed file; keeping the last good set of tokens');
    }
  }
}

function signatureOf(s: { mtimeMs: number; ctimeMs: number; size: number; ino: number }): Signature {
  return { mtimeMs: s.mtimeMs, ctimeMs: s.ctimeMs, size: s.size, ino: s.ino };
}

function sameSignature(a: Signature, b: Signature): boolean {
  return a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs && a.size === b.size && a.ino === b.ino;
}

function isObject(value: unknown): value is Record<string, any> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function unknownKeys(object: Record<string, unknown>, allowed: string[], where: string): void {
  const extra = Object.keys(object).filter((k) => !allowed.includes(k));
  if (extra.length > 0) throw new TokensFileError(`${where} has unknown key(s) ${extra.map((k) => JSON.stringify(k)).join(', ')}; allowed: ${allowed.join(', ')}`);
}

function visibleString(value: unknown, where: string, max: number): string {
  if (typeof value !== 'string' || value.length === 0) throw new TokensFileError(`${where} must be a non-empty string`);
  if (value.length > max) throw new TokensFileError(`${where} is longer than ${max} characters`);
  if (!VISIBLE.test(value)) throw new TokensFileError(`${where} may hold only visible ASCII characters (no spaces or control characters)`);
  return value;
}
