/**
 * The one place that maps errors to HTTP responses, through the error catalog
 * (core/error-catalog.ts). Every body says what was wrong and what to do.
 */
import { STATUS_CODES } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { errorSpec } from '../core/error-catalog.js';
import { PirError, isStorageFull, type ErrorKind } from '../core/errors.js';
import { tooManyProperties, tooManyTags } from '../core/image-entity.js';
import { isUnreachable } from '../infra/unreachable.js';
import { isLingering, mediaTypeOf } from './http-hygiene.js';

/** For a code nobody declared (the catalog test fails on those): the status its kind implies. */
const STATUS_OF_KIND: Record<ErrorKind, number> = {
  bad_request: 400, unauthorized: 401, forbidden: 403, not_found: 404, conflict: 409, gone: 410,
  too_large: 413, unsupported_media_type: 415, unavailable: 503, internal: 500,
  timeout: 408, insufficient_storage: 507,
};

const TITLES: Record<number, string> = {
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 408: 'Request Timeout',
  409: 'Conflict', 410: 'Gone', 413: 'Request Entity Too Large', 414: 'URI Too Long', 415: 'Unsupported Media Type',
  416: 'Requested Range Not Satisfiable', 417: 'Expectation Failed', 431: 'Request Header Fields Too Large',
  500: 'Internal Server Error', 503: 'Service Unavailable', 507: 'Insufficient Storage',
};

/** The request's media type as a message names it. */
const sentAs = (request: FastifyRequest) => {
  const type = mediaTypeOf(request.headers['content-type']).slice(0, 100);
  return type ? `Content-Type ${type}` : 'no Content-Type';
};

/**
 * Fastify's own request errors, as catalog codes with a message that says what to do. Its JSON
 * parser's own messages say "content-type is set to 'application/json'" whatever was sent (a
 * JSON patch, text/plain): ours name the media type the request gave.
 */
const FASTIFY_CODES: Record<string, { code: string; message: (e: FastifyError, request: FastifyRequest) => string }> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { code: 'bad_content_type', message: (e) => `${e.message}. Send JSON bodies as Content-Type: application/json (PATCH: application/openstack-images-v2.1-json-patch; image data: application/octet-stream).` },
  FST_ERR_CTP_BODY_TOO_LARGE: { code: 'body_too_large', message: () => 'The JSON body is larger than PIR accepts (1 MiB); send less, or split the change.' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: 'no_body', message: (_e, request) => `The request says it carries JSON (${sentAs(request)}) but the body is empty; send a JSON body.` },
  FST_ERR_CTP_INVALID_JSON_BODY: { code: 'invalid_json', message: (_e, request) => `The body is not valid JSON (sent with ${sentAs(request)}); send a JSON document.` },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: 'bad_header', message: () => 'Content-Length does not match the body sent.' },
};

/** Retry-After of a 503 for a service PIR runs on that did not answer (start-up waits 0.5–5 s between tries too). */
const DEPENDENCY_RETRY_AFTER_SECONDS = 5;

/** The client went away mid-request: nothing to answer, nothing PIR did wrong. */
const CLIENT_GONE = new Set(['ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ERR_STREAM_PREMATURE_CLOSE', 'FST_ERR_REQ_ABORTED']);

export function errorBody(status: number, code: string, message: string) {
  // OpenStack's shape: one object whose value holds the message (glanceclient reads each value's
  // "message"), with a stable machine-readable error code beside it.
  return { error: { code: status, title: TITLES[status] ?? STATUS_CODES[status] ?? 'Error', message, error_code: code } };
}

export function sendError(reply: FastifyReply, status: number, code: string, message: string) {
  return reply.code(status).type('application/json').send(errorBody(status, code, message));
}

/** 405 with the Allow header, as Glance's reject_method_resource answers a path's other methods. */
export function methodNotAllowed(reply: FastifyReply, method: string, path: string, allow: string[]): FastifyReply {
  reply.header('allow', allow.join(', '));
  return sendError(reply, 405, 'method_not_allowed', `${method} is not allowed on ${path.slice(0, 200)}; it takes ${allow.join(', ')}.`);
}

/** True when the error only means that the client disconnected before PIR answered. */
export function isClientAbort(error: unknown, request: FastifyRequest): boolean {
  if (error instanceof PirError) return false;
  // A service's dropped connection carries the same codes (a MongoDB write cut off: ECONNRESET):
  // the client left only if its own connection is gone.
  if (isUnreachable(error) && request.raw.socket?.destroyed !== true) return false;
  const code = (error as NodeJS.ErrnoException)?.code ?? '';
  if (CLIENT_GONE.has(code)) return true;
  // Node names an upload that broke off "aborted" (the request stream, not a syscall, failed).
  return (error as Error)?.message === 'aborted' || (request.raw.destroyed && request.raw.socket?.destroyed === true);
}

export function handleError(error: FastifyError | Error, request: FastifyRequest, reply: FastifyReply) {
  if (error instanceof PirError) {
    const spec = errorSpec(error.code);
    const status = spec?.status ?? STATUS_OF_KIND[error.kind];
    // A fault the catalog calls expected (a lease that a killed process held past the wait, say)
    // is the client's to retry: warn, not error, which is for what an operator must look at.
    if (status >= 500) request.log[spec?.expected ? 'warn' : 'error']({ err: error, error_code: error.code }, 'request failed');
    if (error.retryAfterSeconds !== undefined) reply.header('retry-after', String(error.retryAfterSeconds));
    return sendError(reply, status, error.code, error.message);
  }
  if (isClientAbort(error, request)) {
    request.log.info({ reason: (error as NodeJS.ErrnoException).code ?? error.message }, 'client aborted the request');
    return sendError(reply, 400, 'client_aborted', 'The client closed the connection before the request was complete.');
  }
  if (isStorageFull(error)) {
    request.log.error({ err: error }, 'disk full');
    const code = (error as NodeJS.ErrnoException).code;
    const what = code === 'EFBIG' ? 'met the largest file its file system or process may write (EFBIG); the operator must raise that limit' : `ran out of disk space (${code}); the operator must free space in PIR_DATA_DIR (or raise its quota)`;
    return sendError(reply, 507, 'insufficient_storage', `PIR ${what}. Try again later.`);
  }
  const fastifyError = error as FastifyError;
  if (fastifyError.validation) {
    // The body schema's cap on an image's fields (api/image-schema.ts) is the property quota
    // met early: the same 413 as the quota's own check, as Glance answers it.
    if (fastifyError.validationContext === 'body' && fastifyError.validation.some((v) => v.keyword === 'maxProperties' && v.instancePath === '')) {
      return handleError(tooManyProperties('far more'), request, reply);
    }
    // Likewise the create body's cap on tags: the tag quota's 413.
    if (fastifyError.validationContext === 'body' && request.routeOptions.url === '/v2/images' && fastifyError.validation.some((v) => v.keyword === 'maxItems' && v.instancePath === '/tags')) {
      const given = (request.body as { tags?: unknown } | undefined)?.tags;
      return handleError(tooManyTags(Array.isArray(given) ? given.length : 'more'), request, reply);
    }
    return sendError(reply, 400, 'invalid_request', `Invalid request: ${enumRefusal(fastifyError, request) ?? fastifyError.message}.`);
  }
  const known = fastifyError.code ? FASTIFY_CODES[fastifyError.code] : undefined;
  if (known) return sendError(reply, errorSpec(known.code)!.status, known.code, known.message(fastifyError, request));
  if (error instanceof SyntaxError || fastifyError.code?.startsWith('FST_ERR_CTP_')) {
    return sendError(reply, 400, 'invalid_json', `The body could not be parsed: ${error.message}.`);
  }
  if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode < 500) {
    return sendError(reply, fastifyError.statusCode, 'bad_request', fastifyError.message);
  }
  if (isUnreachable(error)) {
    // The MongoDB-wire server, Kafka or Redis is down or restarting: the client should retry,
    // and clients that honour Retry-After (or retry 503s) do.
    request.log.error({ err: error }, 'a service PIR runs on did not answer');
    reply.header('retry-after', String(DEPENDENCY_RETRY_AFTER_SECONDS));
    return sendError(reply, 503, 'dependency_unavailable', `A service PIR runs on did not answer; retry in a few seconds. If it goes on, the operator can see which in /readyz and in the logs under this request id: ${request.id}`);
  }
  request.log.error({ err: error }, 'unexpected error');
  return sendError(reply, 500, 'internal_error', 'PIR failed to handle this request; the operator can find the reason in the logs under this request id: ' + request.id);
}

/**
 * What an enum allows and what was given, for a schema refusal of one (Ajv's message names
 * neither: "must be equal to one of the allowed values"). Glance's answer names both.
 */
function enumRefusal(error: FastifyError, request: FastifyRequest): string | undefined {
  const refusal = error.validation?.find((v) => v.keyword === 'enum');
  const allowed = (refusal?.params as { allowedValues?: unknown[] } | undefined)?.allowedValues;
  if (!refusal || !Array.isArray(allowed)) return undefined;
  const context = error.validationContext ?? 'body';
  const source = { body: request.body, querystring: request.query, params: request.params, headers: request.headers }[context];
  const given = valueAt(source, refusal.instancePath);
  const shown = given === undefined ? '' : ` (given: ${preview(given)})`;
  return `${context}${refusal.instancePath} must be one of ${allowed.map((v) => JSON.stringify(v)).join(', ')}${shown}`;
}

/** The member a JSON pointer (Ajv's instancePath) names, or undefined. */
function valueAt(root: unknown, pointer: string): unknown {
  let at = root;
  for (const token of pointer.split('/').slice(1).map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'))) {
    if (at === null || typeof at !== 'object' || !Object.hasOwn(at, token)) return undefined;
    at = (at as Record<string, unknown>)[token];
  }
  return at;
}

/** A given value as JSON, cut short: hostile input is echoed, never at length. */
function preview(value: unknown): string {
  const json = JSON.stringify(value) ?? String(value);
  return json.length > 80 ? `${json.slice(0, 77)}...` : json;
}

/** Errors Fastify's router raises before any route runs (a bad %-escape, a too-long path segment). */
export function handleFrameworkError(error: FastifyError, _request: FastifyRequest, reply: FastifyReply) {
  if (error.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    return sendError(reply, 414, 'uri_too_long', 'A path segment is longer than 1024 characters; ids are 36, tags and names at most 255.');
  }
  if (error.code === 'FST_ERR_BAD_URL') {
    return sendError(reply, 400, 'bad_url', 'The URL holds a malformed %-escape.');
  }
  return sendError(reply, 400, 'bad_request', `The request could not be routed (${error.code}).`);
}

/**
 * Errors of the HTTP parser itself (Node's 'clientError': huge headers, a malformed request line,
 * a headers timeout): no request object exists, so the answer is written to the socket directly,
 * in the same JSON shape, and the connection is closed.
 */
export function clientErrorResponse(error: NodeJS.ErrnoException): { status: number; code: string; message: string } {
  switch (error.code) {
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, code: 'headers_too_large', message: 'The request line and headers are larger than this PIR accepts (16 KiB in all); send fewer or shorter headers, or a shorter URL.' };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
    case 'ERR_HTTP_HEADERS_TIMEOUT':
      return { status: 408, code: 'request_timeout', message: 'The request headers did not all arrive in time.' };
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return { status: 413, code: 'chunk_extensions_too_large', message: 'The chunk extensions of the body are too large.' };
    default:
      return { status: 400, code: 'malformed_request', message: `The request is not valid HTTP/1.1 (${error.code ?? 'parse error'}).` };
  }
}

export function writeClientError(socket: Socket, error: NodeJS.ErrnoException): { status: number; code: string } | null {
  if (error.code === 'ECONNRESET' || socket.destroyed) return null;
  // The rest of a refused body, read after its answer (lingerOnRefusedBody): that request has
  // its answer, and a client that broke off or garbled what it still sent gets no second one.
  if (isLingering(socket)) {
    socket.destroy();
    return null;
  }
  const { status, code, message } = clientErrorResponse(error);
  if (socket.writable) {
    const body = JSON.stringify(errorBody(status, code, message));
    socket.write(`HTTP/1.1 ${status} ${TITLES[status] ?? STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Openstack-Request-Id: req-${randomUUID()}\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy();
  return { status, code };
}
