/**
 * What reading a registered location can fail with. Apart from location-reader.ts so the API and
 * the registration code can tell these errors apart without loading the reader's S3 client.
 */
import { PirError, RefusedError } from '../../core/errors.js';

/** The object is not what was registered: serving it would serve other bytes (never retried). */
export class LocationChangedError extends RefusedError {
  constructor(readonly detail: string) {
    super('location_changed', `The bytes at the image's location changed since it was registered (${detail}); PIR does not serve or import other bytes than the registered ones.`);
    this.name = 'LocationChangedError';
  }
}

/** The egress client's refusals in words that name no host or address (its own messages do). */
export const EGRESS_REASONS: Partial<Record<string, string>> = {
  uri_refused: 'The location URL (or a redirect) is refused: only http(s), no credentials, ports 80 and 443 unless the operator allows others.',
  address_refused: 'The location (or a redirect) leads to a loopback, private, link-local, multicast or metadata address; PIR does not read from it.',
  dns_failed: "The location's host name does not resolve.",
  too_many_redirects: 'The location redirects too many times.',
  timeout: 'The server behind the location did not answer or stopped sending in time.',
  connection_failed: 'The connection to the server behind the location failed or broke off.',
};

/** Reasons that retrying cannot mend. */
const FINAL = new Set(['location_no_ranges', 'location_too_small', 'location_validation_failed', 'location_refused', 'uri_refused', 'address_refused', 'too_many_redirects', 'upstream_status']);

/**
 * The location could not be read (gone, refused, unreachable, or no range support); `code` says
 * which. Messages never name the location's host or URL: users who see the image's failure may
 * not see its location.
 */
export class LocationUnreadableError extends PirError {
  constructor(code: string, message: string) {
    super(FINAL.has(code) ? 'bad_request' : 'unavailable', code, scrub(message), !FINAL.has(code));
    this.name = 'LocationUnreadableError';
  }
}

/** The egress client names hosts and addresses in its messages: keep the reason only. */
export function scrub(message: string): string {
  return message
    .replace(/[a-z][a-z0-9+.-]*:\/\/\S+/gi, '(the location)')
    .replace(/\[[0-9a-f:.]+\](?::\d+)?/gi, '(an address)')
    .replace(/\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b/g, '(an address)')
    .replace(/\b(?:[a-z0-9-]+\.)+[a-z][a-z0-9-]*(?::\d+)?\b/gi, "(the location's host)");
}
