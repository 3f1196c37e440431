/**
 * The authentication hook: every /v2 request carries X-Auth-Token, which the Authenticator port
 * (infra/identity: tokens file or Keystone) turns into request.caller. The token itself is
 * never logged; the request's log lines carry project_id and user_id instead.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Authenticator } from '../core/authenticator.js';
import type { Caller } from '../core/caller.js';
import { PirError } from '../core/errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated caller; every /v2 route passes it to the services. */
    caller: Caller;
  }
}

export function authHook(authenticator: Authenticator) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const token = request.headers['x-auth-token'];
    try {
      if (typeof token !== 'string' || token.length === 0) {
        throw new PirError('unauthorized', 'token_missing', 'This request needs an X-Auth-Token header carrying a valid token.');
      }
      request.caller = { ...(await authenticator.authenticate(token)), request_id: request.id };
    } catch (error) {
      // As keystonemiddleware does: tell the client where to get a token.
      if (error instanceof PirError && error.kind === 'unauthorized' && authenticator.challenge) {
        reply.header('www-authenticate', authenticator.challenge);
      }
      throw error;
    }
    // Every later line of this request (including "request completed") names who asked.
    const log = request.log.child({ project_id: request.caller.project_id, user_id: request.caller.user_id });
    request.log = log;
    reply.log = log;
  };
}
