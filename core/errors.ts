/**
 * Typed domain errors. The API maps them to HTTP codes in one place (api/error-handler.ts);
 * the stage runner uses `retryable` to choose between a retry and a terminal refusal.
 */
export type ErrorKind = 'bad_request' | 'unauthorized' | 'forbidden' | 'not_found' | 'conflict'
  | 'too_large' | 'unsupported_media_type' | 'gone' | 'unavailable' | 'internal'
  /** The client stopped sending (408). */
  | 'timeout'
  /** PIR's disk is full (507): the operator's problem, not the image's. */
  | 'insufficient_storage';

export class PirError extends Error {
  /** Seconds the client should wait before trying again (Retry-After), when the refusal says. */
  retryAfterSeconds?: number;

  constructor(
    readonly kind: ErrorKind,
    readonly code: string,
    message: string,
    readonly retryable = false,
  ) {
    super(message);
    this.name = 'PirError';
  }
}

export const notFound = (what: string) => new PirError('not_found', 'not_found', `${what} was not found. Check the id, or list images with GET /v2/images.`);
export const badRequest = (code: string, message: string) => new PirError('bad_request', code, message);
export const conflict = (code: string, message: string) => new PirError('conflict', code, message);
export const forbidden = (code: string, message: string) => new PirError('forbidden', code, message);
export const requestTimeout = (code: string, message: string) => new PirError('timeout', code, message);
export const insufficientStorage = (code: string, message: string) => new PirError('insufficient_storage', code, message);

/** A stage refused the image: the user's input is at fault, so retrying cannot help. */
export class RefusedError extends PirError {
  constructor(code: string, message: string) {
    super('bad_request', code, message, false);
    this.name = 'RefusedError';
  }
}

/** Something outside the image failed (disk, network, a service): worth retrying. */
export class TransientError extends PirError {
  constructor(code: string, message: string) {
    super('unavailable', code, message, true);
    this.name = 'TransientError';
  }
}

/**
 * The disk is full or over its quota (ENOSPC, EDQUOT; SQLITE_FULL when SQLite met it first), or
 * a file met the size limit of its file system or of the process (EFBIG): the operator must
 * act; not the image's fault.
 */
export function isStorageFull(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL' || code === 'EFBIG';
}

export function isRetryable(error: unknown): boolean {
  if (error instanceof PirError) return error.retryable;
  return true; // an unexpected error (I/O, a bug) gets the retries; the last attempt ends the image.
}

/** An error's errno code (ENOTDIR, EACCES…) or class name: nothing that can carry a path, for messages users read. */
export function errorName(error: unknown): string {
  const e = error as { code?: unknown; name?: unknown } | null;
  if (typeof e?.code === 'string' && /^[A-Z0-9_]{2,40}$/.test(e.code)) return e.code;
  return typeof e?.name === 'string' && /^[A-Za-z0-9_]{1,60}$/.test(e.name) ? e.name : 'Error';
}
