/**
 * Whether a stage's error is the image store being unreachable (an object store refusing
 * connections, timing out, or answering 5xx), as opposed to anything about the image. A stage
 * that fails so waits for the store instead of ending the image (workers/stage-runner.ts).
 *
 * PIR's own errors (PirError: refusals, a registered location that cannot be read) are never an
 * outage of PIR's store, whatever their cause.
 */
import { PirError } from './errors.js';
import { PEER_UNREACHABLE_CODES } from './network-errors.js';
import { BlobStoreUnavailableError } from './ports.js';

/** The AWS SDK's names for a store that timed out or is overloaded. */
const SDK_OUTAGE_NAMES = new Set(['TimeoutError', 'RequestTimeout', 'RequestTimeoutException', 'ServiceUnavailable', 'SlowDown', 'InternalError']);

export function isStoreOutage(error: unknown): boolean {
  for (let e = error as { code?: unknown; name?: unknown; cause?: unknown; $metadata?: { httpStatusCode?: number } } | null | undefined, depth = 0; e && depth < 4; e = e.cause as typeof e, depth++) {
    if (e instanceof PirError) return false;
    if (e instanceof BlobStoreUnavailableError) return true;
    if (typeof e.code === 'string' && PEER_UNREACHABLE_CODES.has(e.code)) return true;
    if (typeof e.name === 'string' && SDK_OUTAGE_NAMES.has(e.name)) return true;
    const status = e.$metadata?.httpStatusCode;
    if (typeof status === 'number' && status >= 500) return true;
  }
  return false;
}
