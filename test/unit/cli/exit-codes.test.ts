/**
 * README's exit-code table, class by class: 401 and a policy's 403 are authorization (5); a 400
 * or a 403 refusing a property the command line set is usage (2); a 403 or 409 about the image's
 * state is a failure (1); and a server that is not PIR is said to be one (1), not crashed on.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AuthError, NotFoundError, NotImageApiError, PirApiError, PirClient } from '../../../client/index.js';
import { describeError, EXIT } from '../../../cli/exit-codes.js';

const answer = (status: number, code: string) => PirApiError.from(status, { error: { code: status, message: 'm', error_code: code } }, 'GET', '/v2/images');

describe('exit codes of PIR errors', () => {
  it('401 and a policy 403 are authorization (5)', () => {
    for (const [status, code] of [[401, 'token_invalid'], [403, 'policy_denied'], [403, 'webhook_all_projects_admin_only'], [403, 'image_deactivated'], [403, 'http_403']] as const) {
      const error = answer(status, code);
      assert.ok(error instanceof AuthError, code);
      assert.equal(describeError(error).code, EXIT.auth, code);
    }
  });

  it('a 400, or a 403 refusing a property the command set, is usage (2)', () => {
    for (const [status, code] of [[400, 'bad_sort_key'], [400, 'bad_filter'], [400, 'invalid_request'], [400, 'invalid_value'], [400, 'address_refused'], [403, 'read_only_property'], [403, 'reserved_property'], [403, 'base_property_not_removable']] as const) {
      const error = answer(status, code);
      assert.ok(!(error instanceof AuthError), code);
      assert.equal(describeError(error).code, EXIT.usage, code);
    }
  });

  it('a refusal of the request as the image stands (403 state, 409, 413) is a failure (1)', () => {
    for (const [status, code] of [[403, 'protected_image'], [403, 'metadef_protected'], [403, 'field_frozen'], [403, 'location_immutable'], [409, 'invalid_status'], [413, 'quota_exceeded']] as const) {
      const error = answer(status, code);
      assert.ok(!(error instanceof AuthError), code);
      const { code: exit, message } = describeError(error);
      assert.equal(exit, EXIT.failure, code);
      assert.match(message, new RegExp(`\\(HTTP ${status}, ${code}\\)$`));
    }
  });

  it('says every failure PIR answered with its status and error_code, 404s and refusals of the caller too', () => {
    assert.match(describeError(answer(404, 'not_found')).message, /^m \(HTTP 404, not_found\)$/);
    assert.match(describeError(answer(403, 'policy_denied')).message, /^m \(HTTP 403, policy_denied\)$/);
    assert.match(describeError(answer(401, 'token_invalid')).message, /^m \(HTTP 401, token_invalid\) Check the token/);
    assert.match(describeError(answer(401, 'token_invalid'), { keystone: true }).message, /^m \(HTTP 401, token_invalid\) The token came from the Keystone login/);
    assert.match(describeError(PirApiError.from(404, null, 'GET', '/v2/images/x')).message, /^HTTP 404 \(HTTP 404\)$/);
    // Made by the client from Keystone's answer: not PIR's code, so not shown as one.
    assert.equal(describeError(new AuthError(401, 'keystone_refused', 'Keystone refused', 'POST', '/v3/auth/tokens', null)).message, 'Keystone refused');
  });

  it('names an HTTP status without an error code once, and no code PIR did not give', () => {
    assert.match(describeError(PirApiError.from(502, 'Bad gateway', 'GET', '/')).message, /^Bad gateway \(HTTP 502\)$/);
  });
});

describe('a server that is not PIR', () => {
  let server: http.Server;
  let base: string;
  before(async () => {
    server = http.createServer((req, res) => {
      if (req.url?.startsWith('/v2/images') && req.method === 'GET' && req.url.includes('json')) return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"items": []}');
      if (req.url === '/v2/info/caller') return void res.writeHead(301, { location: 'https://elsewhere.example/' }).end();
      res.writeHead(200, { 'content-type': 'text/html' }).end('<html>\nhello\x1b]0;x\x07</html>');
    });
    server.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  after(() => { server.close(); });

  it('is said to be one, whatever the call, with what it answered on one line (exit 1)', async () => {
    const client = new PirClient(`http://me:secret@${base.slice('http://'.length)}`, 't');
    const calls: [() => Promise<unknown>, RegExp][] = [
      [() => client.listImages(), /GET \/v2\/images answered 200 \(text\/html\): <html> hello\\x1b\]0;x\\x07<\/html>$/],
      [() => client.listImages({ q: 'json' }), /GET \/v2\/images answered 200 \(application\/json\): \{"items":\[\]\}$/],
      [async () => { for await (const _ of client.allImages()) { /* none */ } }, /GET \/v2\/images answered 200/],
      [() => client.createImage({ name: 'x' }), /POST \/v2\/images answered 200 \(text\/html\)/],
      [() => client.request('GET', '/v2/info/caller'), /GET \/v2\/info\/caller answered 301 to https:\/\/elsewhere\.example\/ with no body$/],
    ];
    for (const [call, said] of calls) {
      const error = await call().catch((e: unknown) => e);
      assert.ok(error instanceof NotImageApiError, String(error));
      assert.match(error.message, new RegExp(`^http://\\*\\*\\*@127\\.0\\.0\\.1:\\d+ did not answer as PIR/Glance's Image API: `));
      assert.match(error.message, said);
      assert.doesNotMatch(error.message, /secret/);
      const { code, message } = describeError(error);
      assert.equal(code, EXIT.failure);
      assert.match(message, /Point the command at PIR with --url or PIR_URL\.$/);
    }
  });
});

describe('an error answer that is not PIR\'s or Glance\'s', () => {
  const page = '<!DOCTYPE HTML>\n<html lang="en">\n<head><title>Error response</title></head>\n<body>\n<h1>Error response</h1>\n<p>Error code: 404</p>\n<p>Message: File not found.</p>\n</body>\n</html>\n';
  /** By the image id asked for: the answer that server gives. */
  const answers: Record<string, [number, Record<string, string>, string]> = {
    'html-404': [404, { 'content-type': 'text/html;charset=utf-8' }, page],
    'html-401': [401, { 'content-type': 'text/html' }, page],
    'html-403-untyped': [403, {}, page],
    'other-json-404': [404, { 'content-type': 'application/json' }, '{"detail": "Not Found"}'],
    'glance-json-404': [404, { 'content-type': 'application/json' }, '{"message": "No image found with ID x<br /><br />", "code": "404 Not Found", "title": "Not Found"}'],
    'glance-text-404': [404, { 'content-type': 'text/plain; charset=UTF-8' }, '404 Not Found\n\nNo image found with ID x\n\n   '],
    'proxy-502': [502, { 'content-type': 'text/html' }, '<html><head><title>502 Bad Gateway</title></head></html>'],
    'keystonemiddleware-401': [401, { 'content-type': 'application/json' }, '{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}'],
  };
  let server: http.Server;
  let client: PirClient;
  before(async () => {
    server = http.createServer((req, res) => {
      if (req.url === '/v2/images/active') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"id": "active", "status": "active", "size": 1, "checksum": null}');
      const [status, headers, body] = answers[decodeURIComponent(req.url!.split('/')[3] ?? '').split('?')[0]!] ?? answers['html-404']!;
      res.writeHead(status, headers).end(body);
    });
    server.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    client = new PirClient(`http://127.0.0.1:${(server.address() as { port: number }).port}`, 't');
  });
  after(() => { server.close(); });

  it('a web page (even a 404, 401 or 403) or another server\'s JSON is no PIR at the URL: exit 1, on one short line', async () => {
    const calls: [string, () => Promise<unknown>][] = [
      ...['html-404', 'html-401', 'html-403-untyped', 'other-json-404'].map((id): [string, () => Promise<unknown>] => [id, () => client.getImage(id)]),
      ['list', () => client.listImages()],
      ['delete', () => client.deleteImage('html-404')],
      ['download', () => client.download('active', join(tmpdir(), `pir-unit-not-pir-${process.pid}`))],
    ];
    for (const [name, call] of calls) {
      const error = await call().catch((e: unknown) => e);
      assert.ok(error instanceof NotImageApiError, `${name}: ${String(error)}`);
      const { code, message } = describeError(error);
      assert.equal(code, EXIT.failure, name);
      assert.match(message, / did not answer as PIR\/Glance's Image API: [A-Z]+ \/v2\/images\S* answered 40[134]\b/, name);
      assert.ok(!message.includes('\n') && message.length < 400, `${name}: ${message}`);
    }
  });

  it("a proxy's 502-504 page: exit 1, and PIR behind it may be down", async () => {
    const error = await client.getImage('proxy-502').catch((e: unknown) => e);
    assert.ok(error instanceof NotImageApiError, String(error));
    assert.match(describeError(error).message, /answered 502 \(text\/html\): <html><head><title>502 Bad Gateway.*\. Check that PIR is up behind it, or point the command at PIR with --url or PIR_URL\.$/);
  });

  it("Glance's own 404s and keystonemiddleware's 401 keep their exit codes (4, 5)", async () => {
    for (const [id, Kind, exit, said] of [
      ['glance-json-404', NotFoundError, EXIT.notFound, /^No image found with ID x<br \/><br \/> \(HTTP 404\)$/],
      ['glance-text-404', NotFoundError, EXIT.notFound, /^404 Not Found No image found with ID x \(HTTP 404\)$/],
      ['keystonemiddleware-401', AuthError, EXIT.auth, /^The request you have made requires authentication\. \(HTTP 401\) Check the token/],
    ] as const) {
      const error = await client.getImage(id).catch((e: unknown) => e);
      assert.ok(error instanceof Kind, `${id}: ${String(error)}`);
      const { code, message } = describeError(error);
      assert.equal(code, exit, id);
      assert.match(message, said, id);
    }
  });
});
