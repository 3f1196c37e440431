/** The HTTP server's connection limits, shared by the API (api/app.ts) and the cache role (cache/cache-app.ts). */

/**
 * Server timeouts. No limit on a whole request (a multi-hour upload that keeps moving is fine):
 * a silent upload body is caught by PIR_UPLOAD_IDLE_SECONDS, a silent connection by the idle
 * socket timeout, slow headers by the headers timeout.
 */
export const HTTP_TIMEOUTS = {
  headersMs: 30_000,
  /**
   * A body parsed whole (JSON, at most 1 MiB) must all arrive within this: the idle timeout
   * alone let one byte every few minutes hold a connection for weeks. Image data streams past
   * the parser and has its own idle rule (PIR_UPLOAD_IDLE_SECONDS).
   */
  bufferedBodyMs: 60_000,
  /** Longer than the usual 60 s of load balancers in front, so PIR is not the one closing first. */
  keepAliveMs: 65_000,
  /** No byte either way on a connection for this long: it is closed. */
  socketIdleMs: 300_000,
  /** An answer with bytes waiting and none taken by the client for this long: closed (api/send-stall.ts). */
  sendStallMs: 60_000,
  /**
   * A body PIR refused before reading it (no token, wrong state, too large) is still read and
   * discarded for up to this long and this much after the answer, so that a client that sends it
   * all before reading the answer sees the answer (api/http-hygiene.ts lingerOnRefusedBody).
   */
  refusedBodyLingerMs: 30_000,
  refusedBodyLingerBytes: 1024 * 1024 * 1024,
  /** The same for a request without a valid token: less reading for anyone to ask of PIR. */
  anonymousBodyLingerBytes: 64 * 1024 * 1024,
};
