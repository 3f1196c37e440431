/** Token check: every /v2 request carries X-Auth-Token. Multi-tenant identity comes later. */
import { timingSafeEqual, createHash } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { PirError } from '../core/errors.js';

import type { Caller } from '../core/caller.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated caller; every /v2 route passes it to the services. */
    caller: Caller;
  }
}

const digest = (value: string) => createHash('sha256').update(value).digest();

export function tokenChecker(adminToken: string) {
  const expected = digest(adminToken);
  return async (request: FastifyRequest): Promise<void> => {
    const token = request.headers['x-auth-token'];
    if (typeof token !== 'string' || token.length === 0) {
      throw new PirError('unauthorized', 'token_missing', 'This request needs an X-Auth-Token header carrying a valid token.');
    }
    // Compare digests, so neither length nor content leaks through timing.
    if (!timingSafeEqual(digest(token), expected)) {
      throw new PirError('unauthorized', 'token_invalid', 'The X-Auth-Token is not valid for this PIR.');
    }
    request.caller = { project_id: 'admin', user_id: 'admin', roles: ['admin'] };
  };
}
