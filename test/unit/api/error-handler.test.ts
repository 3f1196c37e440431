/** api/error-handler.ts: every client mistake is a 4xx with PIR's JSON error body, never a 500. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Fastify from 'fastify';
import { MongoBulkWriteError, MongoClient, MongoNetworkError } from 'mongodb';
import { handleError } from '../../../api/error-handler.js';
import { errorSpec, fail } from '../../../core/error-catalog.js';
import { TransientError } from '../../../core/errors.js';
import { pino } from 'pino';
import { PATCH_TYPE, testApp, type TestApp } from './tenant-app.js';
import { freePort } from '../../support/pir-process.js'; // a loopback port nothing listens on

describe('errors', () => {
  let t: TestApp;
  let id: string;
  before(async () => { t = await testApp(); id = await t.create('a-member', { visibility: 'shared' }); });
  after(async () => { await t.close(); });

  const assertClientError = (res: { statusCode: number; body: string }, what: string) => {
    assert.ok(res.statusCode >= 400 && res.statusCode < 500, `${what}: ${res.statusCode} ${res.body}`);
    const body = JSON.parse(res.body);
    assert.equal(body.error.code, res.statusCode, what);
    assert.ok(errorSpec(body.error.error_code), `${what}: ${body.error.error_code} is not in the catalog`);
    assert.ok(body.error.message.length > 15, what);
  };

  it('maps malformed, oversized, empty and mistyped bodies to catalog codes', async () => {
    const cases: [string, string, string | Buffer, Record<string, string>, string][] = [
      ['POST', '/v2/images', '{"name": ', {}, 'invalid_json'],
      ['POST', '/v2/images', '', {}, 'invalid_request'], // an empty JSON body is no body: a create needs one
      ['POST', '/v2/images', JSON.stringify({ name: 'x'.repeat(2 * 1024 * 1024) }), {}, 'body_too_large'],
      ['POST', '/v2/images', 'name=x', { 'content-type': 'application/x-www-form-urlencoded' }, 'invalid_json'], // read as JSON, as Glance
      ['POST', '/v2/images', '{"__proto__": {"x": 1}}', {}, 'forbidden_json_member'],
      ['PATCH', `/v2/images/${id}`, '[]', { 'content-type': 'text/plain' }, 'patch_media_type'],
      ['POST', `/v2/images/${id}/members`, '{"member": ["B"]}', {}, 'invalid_request'],
      ['PUT', `/v2/images/${id}/members/B`, '"accepted"', {}, 'invalid_request'],
    ];
    for (const [method, url, payload, headers, code] of cases) {
      const res = await t.call('a-member', method, url, payload, { 'content-type': 'application/json', ...headers });
      assertClientError(res, `${method} ${url} ${String(payload).slice(0, 30)}`);
      assert.equal(res.json().error.error_code, code, `${method} ${url} ${String(payload).slice(0, 30)}`);
    }
    // A body that is no JSON is named by the media type it was sent with (not Fastify's 'application/json').
    const form = await t.call('a-member', 'POST', '/v2/images', 'name=x', { 'content-type': 'application/x-www-form-urlencoded' });
    assert.match(form.json().error.message, /not valid JSON \(sent with Content-Type application\/x-www-form-urlencoded\)/);
  });

  it("takes an empty body sent as JSON as no body, as Glance (tempest's REST client sends Content-Type: application/json on every call)", async () => {
    const json = { 'content-type': 'application/json' };
    const own = await t.create('a-member');
    assert.equal((await t.call('a-member', 'PUT', `/v2/images/${own}/tags/t1`, '', json)).statusCode, 204);
    assert.equal((await t.call('a-member', 'DELETE', `/v2/images/${own}/tags/t1`, '', json)).statusCode, 204);
    assert.equal((await t.call('a-member', 'DELETE', `/v2/images/${own}`, '', json)).statusCode, 204);
    assert.equal((await t.call('a-member', 'GET', `/v2/images/${own}`, '', json)).statusCode, 404);
  });

  it("reads JSON bodies whatever their Content-Type, as Glance (curl's -d sends a form type); bodies of data routes keep theirs", async () => {
    for (const headers of [{ 'content-type': 'application/x-www-form-urlencoded' }, { 'content-type': 'text/plain; charset=utf-8' }, { 'content-type': 'application/xml' }]) {
      const res = await t.call('a-member', 'POST', '/v2/images', JSON.stringify({ name: 'any-type', disk_format: 'raw', container_format: 'bare' }), headers);
      assert.equal(res.statusCode, 201, `${JSON.stringify(headers)}: ${res.body}`);
      assert.equal(res.json().name, 'any-type');
      const member = await t.call('a-member', 'POST', `/v2/images/${res.json().id}/members`, JSON.stringify({ member: 'B' }), headers);
      assert.equal(member.statusCode, 200, member.body); // a new image is shared by default, as in Glance
      assert.equal(member.json().member_id, 'B');
    }
    const untyped = await t.app.inject({ method: 'POST', url: '/v2/images', headers: { 'x-auth-token': 'a-member' }, payload: JSON.stringify({ name: 'no-type' }) });
    assert.equal(untyped.headers['content-type']?.toString().startsWith('application/json'), true);
    assert.equal(untyped.statusCode, 201, untyped.body);
    // JSON patch and image data still need their own media types.
    assert.equal((await t.call('a-member', 'PATCH', `/v2/images/${id}`, '[]', { 'content-type': 'text/plain' })).json().error.error_code, 'patch_media_type');
    assert.equal((await t.call('a-member', 'PUT', `/v2/images/${id}/file`, '{}', { 'content-type': 'text/plain' })).json().error.error_code, 'bad_content_type');
  });

  it("names what an enum allows and what was given (Glance: \"'qed' is not one of [...]\"), the given value cut short", async () => {
    const create = async (body: Record<string, unknown>) => t.call('a-member', 'POST', '/v2/images', JSON.stringify(body), { 'content-type': 'application/json' });
    const qed = await create({ name: 'x', disk_format: 'qed' });
    assert.equal(qed.statusCode, 400, qed.body);
    assert.equal(qed.json().error.error_code, 'invalid_request');
    assert.match(qed.json().error.message, /^Invalid request: body\/disk_format must be one of .*"qcow2".*"iso".* \(given: "qed"\)\.$/);
    const visibility = await create({ name: 'x', visibility: 'everyone' });
    assert.match(visibility.json().error.message, /body\/visibility must be one of .*"private".* \(given: "everyone"\)/);
    const long = await create({ name: 'x', container_format: 'y'.repeat(5000) });
    assert.equal(long.statusCode, 400, long.body);
    assert.ok(long.body.length < 1000, `the given value is echoed at length: ${long.body.length} bytes`);
    assert.match(long.json().error.message, /\(given: "y+\.\.\.\)/);
  });

  it('never answers 500 to hostile input on any endpoint', async () => {
    const bodies: unknown[] = [null, 0, 'x', [], {}, [null], [{}], { member: null }, { status: null }, { name: { $gt: '' } },
      [{ op: 'add', path: '/__proto__', value: 'x' }], [{ op: 'add', path: '/constructor', value: 'x' }], [{ op: 'replace', path: '/', value: 1 }],
      [{ op: 'add', path: `/${'k'.repeat(300)}`, value: 'v' }], [{ op: 'add', path: '/tags', value: [1, 2] }], { tags: 'notalist' }];
    const urls = [`/v2/images`, `/v2/images/${id}`, `/v2/images/${id}/members`, `/v2/images/${id}/members/B`, `/v2/images/${id}/tags/x`,
      `/v2/images/${id}/import`, `/v2/images/not-an-id`, `/v2/images/%E0%A4%A`, '/v2/tasks/..%2F..', `/v2/images/${id}/actions/deactivate`];
    for (const url of urls) {
      for (const method of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE']) {
        for (const body of bodies) {
          const res = await t.call('b-member', method, url, JSON.stringify(body), { 'content-type': method === 'PATCH' ? PATCH_TYPE : 'application/json' });
          assert.ok(res.statusCode < 500, `${method} ${url} ${JSON.stringify(body)}: ${res.statusCode} ${res.body}`);
          if (res.statusCode >= 400) assertClientError(res, `${method} ${url}`);
        }
      }
    }
    // The image is unchanged by all of that (B is no member of it).
    const doc = (await t.call('a-member', 'GET', `/v2/images/${id}`)).json();
    assert.equal(doc.name, 'img');
    assert.equal(Object.getPrototypeOf(doc), Object.prototype);
  });

  it('refuses a __proto__ member (or constructor.prototype) by name, not as invalid JSON', async () => {
    const cases: [string, string, string, Record<string, string>, string][] = [
      ['POST', '/v2/images', '{"name": "p", "__proto__": "v"}', {}, '/__proto__'],
      ['POST', '/v2/images', '{"name": "p", "__proto__": "v"}', { 'content-type': 'text/plain' }, '/__proto__'],
      ['POST', '/v2/images', '{"name": "p", "constructor": {"prototype": {"x": 1}}}', {}, '/constructor/prototype'],
      ['PATCH', `/v2/images/${id}`, '[{"op": "add", "path": "/p", "value": {"a/b": {"__proto__": 1}}}]', { 'content-type': PATCH_TYPE }, '/0/value/a~1b/__proto__'],
      ['POST', `/v2/images/${id}/members`, '{"member": "B", "__proto__": null}', {}, '/__proto__'],
    ];
    for (const [method, url, payload, headers, at] of cases) {
      const res = await t.call('a-member', method, url, payload, { 'content-type': 'application/json', ...headers });
      assert.equal(res.statusCode, 400, `${payload}: ${res.body}`);
      assertClientError(res, payload);
      assert.equal(res.json().error.error_code, 'forbidden_json_member', payload);
      assert.ok(res.json().error.message.includes(`at ${at}:`), `${res.json().error.message} names ${at}`);
      assert.doesNotMatch(res.json().error.message, /not valid JSON/);
    }
    // Broken JSON is still invalid_json; a constructor that is a string is an extra property like any other.
    assert.equal((await t.call('a-member', 'POST', '/v2/images', '{"__proto__": ', { 'content-type': 'application/json' })).json().error.error_code, 'invalid_json');
    const plain = await t.call('a-member', 'POST', '/v2/images', '{"name": "c", "constructor": "x"}', { 'content-type': 'application/json' });
    assert.equal(plain.statusCode, 201, plain.body);
    assert.equal(plain.json().constructor, 'x');
  });

  it('survives prototype-named properties from the owner', async () => {
    const proto = await t.patch('a-member', id, [{ op: 'add', path: '/__proto__', value: 'x' }]);
    assert.equal(proto.statusCode, 403);
    assert.equal(proto.json().error.error_code, 'reserved_property');
    assert.equal((await t.patch('a-member', id, [{ op: 'add', path: '/constructor', value: 'y' }, { op: 'add', path: '/toString', value: 'z' }])).statusCode, 200);
    const doc = (await t.call('a-member', 'GET', `/v2/images/${id}`)).json();
    assert.deepEqual([doc.constructor, doc.toString], ['y', 'z']);
    assert.equal((await t.patch('a-member', id, [{ op: 'replace', path: '/hasOwnProperty', value: 'v' }])).statusCode, 409);
  });
});

describe('errors of a service PIR runs on', () => {
  it('answers 503 dependency_unavailable with Retry-After, not 500, when the MongoDB-wire server, Kafka or Redis does not answer', async () => {
    const port = await freePort();
    const mongo = new MongoClient(`mongodb://127.0.0.1:${port}/x`, { serverSelectionTimeoutMS: 100 });
    const selection = await mongo.connect().then(() => null, (error: unknown) => error);
    await mongo.close();
    const failures: [string, unknown][] = [
      ['no server selected', selection],
      // A group-committed write whose connection broke: the driver keeps the network error inside.
      ['bulk write cut off', new MongoBulkWriteError(new MongoNetworkError('read ECONNRESET'), {} as never)],
      ['kafka broker gone', { name: 'KafkaJSNumberOfRetriesExceeded', message: 'retries exhausted', originalError: { name: 'KafkaJSConnectionError' } }],
      ['redis refused', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' })],
      // The codes a client's own reset has too, from a service while the client is still there (it was 400 client_aborted).
      ['service connection reset', Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET', syscall: 'read' })],
      ['bulk write reset', Object.assign(new MongoBulkWriteError(new MongoNetworkError('write ECONNRESET'), {} as never), { code: 'ECONNRESET' })],
    ];
    const app = Fastify();
    app.setErrorHandler(handleError);
    app.get('/fail/:n', async (request) => { throw failures[Number((request.params as { n: string }).n)]![1]; });
    app.get('/bug', async () => { throw new TypeError('x is not a function'); });
    try {
      for (const [i, [what]] of failures.entries()) {
        const res = await app.inject({ method: 'GET', url: `/fail/${i}` });
        assert.equal(res.statusCode, 503, what);
        assert.equal(res.headers['retry-after'], '5', what);
        const body = res.json();
        assert.equal(body.error.error_code, 'dependency_unavailable', what);
        assert.match(body.error.message, /did not answer; retry in a few seconds/, what);
        assert.equal(errorSpec('dependency_unavailable')?.status, 503);
      }
      const bug = await app.inject({ method: 'GET', url: '/bug' });
      assert.equal(bug.statusCode, 500, 'a bug stays a 500');
      assert.equal(bug.json().error.error_code, 'internal_error');
    } finally {
      await app.close();
    }
  });
});

describe('storage that the operator must see to', () => {
  it('answers 507 insufficient_storage, naming the cause, for a full disk met by a file or by SQLite, and for a file past its size limit', async () => {
    const failures: [string, Error, RegExp][] = [
      ['ENOSPC', Object.assign(new Error('no space left on device'), { code: 'ENOSPC' }), /ran out of disk space \(ENOSPC\)/],
      ['SQLITE_FULL', Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL', name: 'SqliteError' }), /ran out of disk space \(SQLITE_FULL\)/],
      ['EFBIG', Object.assign(new Error('file too large'), { code: 'EFBIG' }), /largest file .* \(EFBIG\)/],
    ];
    const app = Fastify();
    app.setErrorHandler(handleError);
    app.get('/fail/:n', async (request) => { throw failures[Number((request.params as { n: string }).n)]![1]; });
    try {
      for (const [i, [what, , message]] of failures.entries()) {
        const res = await app.inject({ method: 'GET', url: `/fail/${i}` });
        assert.equal(res.statusCode, 507, what);
        assert.equal(res.json().error.error_code, 'insufficient_storage', what);
        assert.match(res.json().error.message, message, what);
      }
    } finally {
      await app.close();
    }
  });
});


describe('log levels of the faults', () => {
  it('logs an expected, retryable fault (change_contention, a *_contention) at warn and any other 5xx at error', async () => {
    const lines: { level: number; msg: string; error_code?: string }[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => { lines.push(JSON.parse(line)); } });
    const app = Fastify({ loggerInstance: log, disableRequestLogging: true });
    app.setErrorHandler(handleError);
    const errors = [
      fail('change_contention', "Another change of project D's galleries has been under way for over 10 s; retry."),
      new TransientError('manifest_contention', 'Image x is being changed by many writers at once; try again.'),
      fail('storage_unavailable', 'The image store did not take the bytes.'),
    ];
    app.get('/fail/:n', async (request) => { throw errors[Number((request.params as { n: string }).n)]!; });
    try {
      for (const i of errors.keys()) assert.equal((await app.inject({ method: 'GET', url: `/fail/${i}` })).statusCode, 503);
      const failed = lines.filter((l) => l.msg === 'request failed').map((l) => [l.error_code, l.level]);
      assert.deepEqual(failed, [['change_contention', 40], ['manifest_contention', 40], ['storage_unavailable', 50]]);
    } finally {
      await app.close();
    }
  });
});
