/**
 * Glance's `body_reject` routes (router.py) answer a request that carries a body with 400. Its
 * wsgi.Resource asks the deserializer's has_body: for GET and DELETE that is Content-Length > 0
 * (a chunked coding counts only for POST, PUT and PATCH). Used as a route's onRequest: after the
 * token is checked, before the body is read or the policy asked, as in Glance.
 */
import type { FastifyRequest } from 'fastify';
import { fail } from '../core/error-catalog.js';

export async function rejectBody(request: FastifyRequest): Promise<void> {
  if (Number(request.headers['content-length'] ?? 0) > 0) throw fail('body_not_expected', 'A body is not expected with this request.');
}
