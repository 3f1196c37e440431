/**
 * The one place that maps errors to HTTP responses, through the error catalog
 * (core/error-catalog.ts). Every body says what was wrong and what to do.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { errorSpec } from '../core/error-catalog.js';
import { PirError, type ErrorKind } from '../core/errors.js';

/** For a code nobody declared (the catalog test fails on those): the status its kind implies. */
const STATUS_OF_KIND: Record<ErrorKind, number> = {
  bad_request: 400, unauthorized: 401, forbidden: 403, not_found: 404, conflict: 409, gone: 410,
  too_large: 413, unsupported_media_type: 415, unavailable: 503, internal: 500,
};

const TITLES: Record<number, string> = {
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 409: 'Conflict',
  410: 'Gone', 413: 'Request Entity Too Large', 414: 'URI Too Long', 415: 'Unsupported Media Type', 416: 'Requested Range Not Satisfiable',
  500: 'Internal Server Error', 503: 'Service Unavailable',
};

/** Fastify's own request errors, as catalog codes with a message that says what to do. */
const FASTIFY_CODES: Record<string, { code: string; message: (e: FastifyError) => string }> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { code: 'bad_content_type', message: (e) => `${e.message}. Send JSON bodies as Content-Type: application/json (PATCH: application/openstack-images-v2.1-json-patch; image data: application/octet-stream).` },
  FST_ERR_CTP_BODY_TOO_LARGE: { code: 'body_too_large', message: () => 'The JSON body is larger than PIR accepts (1 MiB); send less, or split the change.' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: 'no_body', message: () => 'The request says it carries JSON but the body is empty; send a JSON body, or no Content-Type.' },
  FST_ERR_CTP_INVALID_JSON_BODY: { code: 'invalid_json', message: (e) => `The body is not valid JSON (${e.message}).` },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: 'bad_header', message: () => 'Content-Length does not match the body sent.' },
};

export function errorBody(status: number, code: string, message: string) {
  // OpenStack's shape: one object whose value holds the message (glanceclient reads each value's
  // "message"), with a stable machine-readable error code beside it.
  return { error: { code: status, title: TITLES[status] ?? 'Error', message, error_code: code } };
}

export function sendError(reply: FastifyReply, status: number, code: string, message: string) {
  // A refused upload body is not read to its end: close the connection instead of draining it.
  if (status === 413) reply.header('Connection', 'close');
  return reply.code(status).type('application/json').send(errorBody(status, code, message));
}

export function handleError(error: FastifyError | Error, request: FastifyRequest, reply: FastifyReply) {
  if (error instanceof PirError) {
    const status = errorSpec(error.code)?.status ?? STATUS_OF_KIND[error.kind];
    if (status >= 500) request.log.error({ err: error }, 'request failed');
    return sendError(reply, status, error.code, error.message);
  }
  const fastifyError = error as FastifyError;
  if (fastifyError.validation) {
    return sendError(reply, 400, 'invalid_request', `Invalid request: ${fastifyError.message}.`);
  }
  const known = fastifyError.code ? FASTIFY_CODES[fastifyError.code] : undefined;
  if (known) return sendError(reply, errorSpec(known.code)!.status, known.code, known.message(fastifyError));
  if (error instanceof SyntaxError || fastifyError.code?.startsWith('FST_ERR_CTP_')) {
    return sendError(reply, 400, 'invalid_json', `The body could not be parsed: ${error.message}.`);
  }
  if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode < 500) {
    return sendError(reply, fastifyError.statusCode, 'bad_request', fastifyError.message);
  }
  request.log.error({ err: error }, 'unexpected error');
  return sendError(reply, 500, 'internal_error', 'PIR failed to handle this request; the operator can find the reason in the logs under this request id: ' + request.id);
}
