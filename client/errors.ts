/**
 * What the client throws. An HTTP error carries PIR's error body (`error_code`, `message`) so a
 * caller can branch on the code and show the server's own advice.
 */

/** PIR answered with an error status. */
export class PirApiError extends Error {
  constructor(
    readonly status: number,
    /** PIR's stable machine-readable code (`error.error_code`), or `http_<status>`. */
    readonly errorCode: string,
    message: string,
    readonly method: string,
    readonly path: string,
    /** The parsed response body, as sent. */
    readonly body: unknown,
  ) {
    super(message);
    this.name = 'PirApiError';
  }

  /** Builds the right subclass from a response. */
  static from(status: number, body: unknown, method: string, path: string): PirApiError {
    const error = (body as { error?: { error_code?: unknown; message?: unknown } } | null)?.error;
    const code = typeof error?.error_code === 'string' ? error.error_code : `http_${status}`;
    const glance = (body as { message?: unknown } | null)?.message;
    const text = typeof error?.message === 'string' ? error.message
      : typeof glance === 'string' ? oneLine(glance)
        : typeof body === 'string' && oneLine(body) ? cut(oneLine(body), 500) : `HTTP ${status}`;
    const Kind = status === 401 || (status === 403 && !FORBIDDEN_WHAT.has(code)) ? AuthError
      : status === 404 ? NotFoundError
        : status === 409 ? ConflictError
          : PirApiError;
    return new Kind(status, code, text, method, path, body);
  }
}

/**
 * PIR's 403s that refuse what is asked (a property it sets or reserves, a change the image's
 * state forbids), not who asks: Glance answers 403 for both, but only the second is a matter of
 * credentials or roles.
 */
const FORBIDDEN_WHAT = new Set(['read_only_property', 'reserved_property', 'base_property_not_removable', 'field_frozen', 'protected_image',
  'cannot_deactivate', 'cannot_reactivate', 'members_only_shared', 'last_store', 'metadef_protected', 'location_immutable']);

/**
 * The answer to a call that did not get the status it expects: PIR's error, or, for a success or a
 * redirect that is not this call's, a server that is not PIR (or Glance's Image API) at all.
 */
export function unexpectedAnswer(base: string, answer: { status: number; headers: Record<string, string>; body: unknown }, method: string, path: string): Error {
  if (answer.status >= 400 && isImageApiError(answer)) return PirApiError.from(answer.status, answer.body, method, path);
  return new NotImageApiError(base, method, path, answer);
}

/**
 * Whether an error answer is one PIR or Glance would send: PIR's `{error: {…}}` (keystonemiddleware's
 * 401 has that shape too), webob's JSON `{message, code, title}` or its short text, or no body (a
 * HEAD). A web page, or another server's JSON, means the URL leads elsewhere: read as PIR's, its
 * 404 would pass for a missing image (exit 4).
 */
export function isImageApiError(answer: { headers: Record<string, string>; body: unknown }): boolean {
  const { body } = answer;
  if (/^\s*text\/html\b/i.test(answer.headers['content-type'] ?? '')) return false;
  if (body === null || body === undefined || body === '') return true;
  if (typeof body === 'string') return !body.trimStart().startsWith('<');
  if (typeof body !== 'object' || Array.isArray(body)) return false;
  const { error, message } = body as { error?: { message?: unknown; error_code?: unknown } | null; message?: unknown };
  return typeof message === 'string' || (typeof error === 'object' && error !== null && (typeof error.message === 'string' || typeof error.error_code === 'string'));
}

/** The server answered, but not as PIR (or Glance's Image API) answers this call: the URL leads elsewhere. */
export class NotImageApiError extends Error {
  override name = 'NotImageApiError';
  /** The status it answered (a proxy's 502-504 page may stand in for a PIR that is down). */
  readonly status: number;
  constructor(base: string, method: string, path: string, answer: { status: number; headers: Record<string, string>; body: unknown }) {
    super(`${withoutUserinfo(base)} did not answer as PIR/Glance's Image API: ${method} ${path.replace(/\?.*/, '')} answered ${described(answer)}`);
    this.status = answer.status;
  }
}

/** "200 (text/html): <html>hello</html>", short and on one line. */
function described(answer: { status: number; headers: Record<string, string>; body: unknown }): string {
  const type = answer.headers['content-type']?.split(';')[0];
  const text = typeof answer.body === 'string' ? answer.body : answer.body === null || answer.body === undefined ? '' : JSON.stringify(answer.body);
  const shown = oneLine(text);
  const location = answer.headers.location ? ` to ${withoutUserinfo(answer.headers.location)}` : '';
  return `${answer.status}${location}${type ? ` (${type})` : ''}${shown ? `: ${cut(shown, 120)}` : ' with no body'}`;
}

/** Another server's text, shown to a terminal: control characters escaped, on one line. */
function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim().replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

function cut(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/** A URL as messages may show it: user:password@ replaced by ***@. */
export function withoutUserinfo(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#@]*@/i, '$1***@');
}

/** 401 (no or bad token), or a 403 that refuses the caller (policy: its roles or project). */
export class AuthError extends PirApiError {
  override name = 'AuthError';
}

export class NotFoundError extends PirApiError {
  override name = 'NotFoundError';
}

export class ConflictError extends PirApiError {
  override name = 'ConflictError';
}

/** The pipeline refused the image (status `killed`), or a synchronous upload answered with the refusal. */
export class ImageRefusedError extends Error {
  override name = 'ImageRefusedError';
  constructor(
    readonly imageId: string,
    readonly failure: { stage: string; code: string; message: string },
  ) {
    super(`image ${imageId} was refused at the ${failure.stage} stage (${failure.code}): ${failure.message}`);
  }
}

/** Bytes did not hash to what the server (or the caller) said they should. */
export class ChecksumMismatchError extends Error {
  override name = 'ChecksumMismatchError';
  constructor(
    readonly algorithm: 'md5' | 'sha512',
    readonly expected: string,
    readonly actual: string,
    message: string,
  ) {
    super(message);
  }
}

/** PIR could not be reached or the connection broke (no HTTP answer). */
export class TransportError extends Error {
  override name = 'TransportError';
  constructor(
    readonly url: string,
    override readonly cause: Error,
    /** Who was being reached: PIR, or Keystone for a login. */
    readonly service: 'PIR' | 'Keystone' = 'PIR',
  ) {
    const code = (cause as NodeJS.ErrnoException).code ?? cause.message;
    super(TransportError.unreachable(cause) ? `cannot reach ${url}: ${code}`
      : cause.name === 'IdleTimeoutError' ? `${url} went silent: ${cause.message}`
        : `the connection to ${url} broke (${code})`);
  }

  /** Nothing answered at all (as opposed to a connection that broke). */
  static unreachable(cause: Error): boolean {
    return ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH'].includes((cause as NodeJS.ErrnoException).code ?? '');
  }
}

/** Waiting for an image took longer than the caller allowed. */
export class WaitTimeoutError extends Error {
  override name = 'WaitTimeoutError';
}

/** A download stopped part way; the bytes so far are kept for a resume. */
export class DownloadInterruptedError extends Error {
  override name = 'DownloadInterruptedError';
  constructor(
    readonly partFile: string,
    readonly bytes: number,
    override readonly cause: Error,
  ) {
    super(`the download was cut after ${bytes} bytes (${(cause as NodeJS.ErrnoException).code ?? cause.message}); ${partFile} keeps them: run the same command again to resume`);
  }
}

/** The image has no data to download (not active): found by the client, not an error PIR answered. */
export class NoImageDataError extends Error {
  override name = 'NoImageDataError';
  constructor(readonly imageId: string, message: string) {
    super(message);
  }
}

/** The download's destination cannot take it (a directory, a dangling link); found before any request. */
export class DownloadTargetError extends Error {
  override name = 'DownloadTargetError';
}
