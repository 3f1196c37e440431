/**
 * Whether an error says that a service PIR runs on could not be reached (refused, reset or
 * dropped connections, no server selected, a broker not ready): the kind of failure that waiting
 * can fix. Start-up waits on these (infra/startup-wait.ts) and the API answers them with 503 and
 * Retry-After instead of 500 (api/error-handler.ts).
 */
import { PEER_UNREACHABLE_CODES } from '../core/network-errors.js';

/** The clients' own names for the same (mongodb's network and server-selection errors, kafkajs's connection errors). */
const UNREACHABLE_NAMES = new Set([
  'MongoNetworkError', 'MongoNetworkTimeoutError', 'MongoServerSelectionError',
  'KafkaJSConnectionError', 'KafkaJSConnectionClosedError', 'KafkaJSBrokerNotFound', 'KafkaJSRequestTimeoutError',
  // A service that did not answer in time: the AWS SDK's node:http handler after its socketTimeout
  // (the S3 store's writes), and AbortSignal.timeout's (the cache role's upstream calls; the
  // Keystone client wraps its own timeouts in a 503 already).
  'TimeoutError',
]);

/**
 * Looks through the causes clients wrap errors in: `cause`; kafkajs's `originalError`, and
 * `retriable` on protocol errors a broker still starting answers with (no leader yet); mongodb's
 * `errorResponse` (a bulk write keeps its network error there); AggregateError's `errors`.
 */
export function isUnreachable(error: unknown, depth = 0): boolean {
  if (!error || typeof error !== 'object' || depth > 5) return false;
  const e = error as { name?: unknown; code?: unknown; retriable?: unknown; cause?: unknown; originalError?: unknown; errorResponse?: unknown; errors?: unknown };
  if (typeof e.name === 'string' && UNREACHABLE_NAMES.has(e.name)) return true;
  if (typeof e.code === 'string' && PEER_UNREACHABLE_CODES.has(e.code)) return true;
  if (e.name === 'KafkaJSProtocolError' && e.retriable === true) return true;
  if (Array.isArray(e.errors) && e.errors.some((inner) => isUnreachable(inner, depth + 1))) return true;
  return [e.cause, e.originalError, e.errorResponse].some((inner) => inner !== error && isUnreachable(inner, depth + 1));
}
