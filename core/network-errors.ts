/**
 * Socket-level failures (Node, undici) that say the other end is not there (yet), or went away
 * mid-connection: the kind of failure waiting can fix. Shared by the store-outage test of the
 * stages (core/store-outage.ts) and the services' one of start-up and the API (infra/unreachable.ts).
 */
export const PEER_UNREACHABLE_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENOTFOUND', 'EAI_AGAIN',
  // undici's (the S3 store's reads): a server silent too long, or a socket it closed.
  'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CLOSED',
]);
