/**
 * The `pir` command's exit codes, and the one place that turns an error into a message that
 * says what to do and the code a script can branch on.
 */
import { AuthError, ChecksumMismatchError, DownloadInterruptedError, DownloadTargetError, GalleryAmbiguous, GalleryNotFound, GalleryReadOnly, ImageRefusedError, NoImageDataError, NotFoundError, NotImageApiError, PirApiError, TransportError, WaitTimeoutError, withoutUserinfo } from '../client/index.js';

/** brokenPipe: 128 + SIGPIPE, what a shell sees of a command its reader stopped early (`| head`). */
export const EXIT = { ok: 0, failure: 1, usage: 2, refused: 3, notFound: 4, auth: 5, brokenPipe: 141 } as const;

export const EXIT_CODES_HELP = `Exit codes:
  0  success
  1  failure (server error, network, no PIR at --url: a server that answers, even with an
     error page, but not as the Image API; checksum mismatch, timeout; a refusal of the
     request as things stand: a conflict, a limit or quota, a protected image)
  2  usage or configuration error, or a value PIR refused (HTTP 400; a read-only or reserved property)
  3  image refused by PIR's pipeline (status killed; the reason is printed), or its upload was
     empty for a format with a header (empty_image)
  4  image (or other resource) not found
  5  authentication or authorization refused (bad or missing token, Keystone login failed, a policy's 403)
  141 the output's reader stopped early (\`pir … | head\`): pir ends quietly, as SIGPIPE ends a command
A failure PIR answered ends with its status and error_code: "… (HTTP 404, not_found)".`;

/** PIR's 403s that refuse a value the command line gave (a property PIR sets or reserves): usage, as its 400s are. */
const REFUSED_VALUES = new Set(['read_only_property', 'reserved_property', 'base_property_not_removable']);

/** An error found before any request: bad flags, bad configuration. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Missing or refused credentials, found before any request. */
export class CredentialsError extends Error {
  override name = 'CredentialsError';
}

/** A failure, and what the command did about what it had made: said after the failure. */
export class FailureWithNote extends Error {
  override name = 'FailureWithNote';
  constructor(readonly failure: unknown, readonly note: string) {
    super(note);
  }
}

/** The connection a failure happened on: PIR's URL, and whether the token came from a Keystone login. */
export interface Where {
  url?: string;
  keystone?: boolean;
}

/** PIR's message with what it answered: `… (HTTP 409, invalid_status)`, or the status alone when the answer had no error_code. */
function withStatus(error: PirApiError): string {
  return `${error.message} (HTTP ${error.status}${error.errorCode === `http_${error.status}` ? '' : `, ${error.errorCode}`})`;
}

export function describeError(error: unknown, where: Where = {}): { code: number; message: string } {
  if (error instanceof FailureWithNote) {
    const { code, message } = describeError(error.failure, where);
    return { code, message: `${message}\npir: ${error.note}` };
  }
  if (error instanceof UsageError || error instanceof DownloadTargetError || error instanceof GalleryAmbiguous) return { code: EXIT.usage, message: error.message };
  if (error instanceof CredentialsError || error instanceof GalleryReadOnly) return { code: EXIT.auth, message: error.message };
  if (error instanceof ImageRefusedError) return { code: EXIT.refused, message: error.message };
  if (error instanceof GalleryNotFound) return { code: EXIT.notFound, message: error.message };
  if (error instanceof NotFoundError) return { code: EXIT.notFound, message: withStatus(error) };
  if (error instanceof AuthError) {
    // Keystone's own refusals say what to check; a token Keystone gave is not the user's to fix.
    if (error.errorCode.startsWith('keystone_')) return { code: EXIT.auth, message: error.message };
    const hint = error.status !== 401 ? ''
      : where.keystone ? ' The token came from the Keystone login (--os-auth-url): PIR must check tokens with that same Keystone.'
        : ' Check the token (--token, PIR_TOKEN or the profile\'s "token"), or log in with --os-auth-url.';
    return { code: EXIT.auth, message: `${withStatus(error)}${hint}` };
  }
  if (error instanceof PirApiError) {
    // A 400 refuses a value the command passed on (a sort key, a filter, a location, a metafile's field).
    const code = error.status === 400 || REFUSED_VALUES.has(error.errorCode) ? EXIT.usage : EXIT.failure;
    return { code, message: withStatus(error) };
  }
  if (error instanceof NotImageApiError) {
    // A proxy's 502-504 page in front of PIR also lands here: PIR itself may be down.
    const next = [502, 503, 504].includes(error.status) ? 'Check that PIR is up behind it, or point' : 'Point';
    return { code: EXIT.failure, message: `${error.message}. ${next} the command at PIR with --url or PIR_URL.` };
  }
  if (error instanceof TransportError) {
    if (error.cause.name === 'IdleTimeoutError') return { code: EXIT.failure, message: `${error.message}; wait longer with --http-timeout (or PIR_HTTP_TIMEOUT), or check ${error.service}'s health` };
    if (!TransportError.unreachable(error.cause)) return { code: EXIT.failure, message: `${error.message}; run the command again` };
    if (error.service === 'Keystone') return { code: EXIT.failure, message: `${error.message}. Is Keystone running there? Check --os-auth-url (OS_AUTH_URL, or the profile's "os_auth_url").` };
    return { code: EXIT.failure, message: `${error.message}. Is PIR running there? Point the command at it with --url or PIR_URL${where.url ? ` (now ${withoutUserinfo(where.url)})` : ''}.` };
  }
  if (error instanceof ChecksumMismatchError || error instanceof WaitTimeoutError || error instanceof DownloadInterruptedError || error instanceof NoImageDataError) return { code: EXIT.failure, message: error.message };
  const e = error as NodeJS.ErrnoException;
  if (e?.code === 'ENOENT' && e.path) return { code: EXIT.usage, message: `${e.path}: no such file` };
  if (e?.code === 'EACCES' && e.path) return { code: EXIT.failure, message: `${e.path}: permission denied` };
  if (e?.code === 'EISDIR' && e.path) return { code: EXIT.usage, message: `${e.path} is a directory; give a file` };
  return { code: EXIT.failure, message: e?.stack ?? String(error) };
}
