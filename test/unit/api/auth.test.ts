/** The authentication hook in-process: 401 bodies and headers, 503 from the port, log bindings. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Fastify, { type FastifyBaseLogger } from 'fastify';
import { pino } from 'pino';
import { authHook } from '../../../api/auth.js';
import { handleError } from '../../../api/error-handler.js';
import { tokenInvalid, type Authenticator } from '../../../core/authenticator.js';
import { PirError } from '../../../core/errors.js';

const GOOD = 'good-token-0123456789';
const DOWN = 'token-while-identity-is-down';

function fakeAuthenticator(challenge: string | null): Authenticator {
  return {
    challenge,
    async authenticate(token) {
      if (token === GOOD) return { project_id: 'demo', user_id: 'alice', roles: ['member', 'reader'] };
      if (token === DOWN) throw new PirError('unavailable', 'identity_unavailable', 'Keystone at http://ks is unreachable; retry later.');
      throw tokenInvalid();
    },
    async close() {},
  };
}

async function appWith(challenge: string | null) {
  const lines: Record<string, any>[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => { lines.push(JSON.parse(line)); } });
  const app = Fastify({ loggerInstance: log as FastifyBaseLogger });
  app.setErrorHandler(handleError);
  app.addHook('onRequest', authHook(fakeAuthenticator(challenge)));
  app.get('/v2/whoami', async (request) => { request.log.info('handling'); return request.caller; });
  await app.ready();
  return { app, lines };
}

describe('auth hook', () => {
  it('refuses a missing or bad token with 401 in the JSON error shape; no challenge without Keystone', async () => {
    const { app } = await appWith(null);
    const missing = await app.inject({ url: '/v2/whoami' });
    assert.equal(missing.statusCode, 401);
    assert.equal(missing.headers['www-authenticate'], undefined);
    assert.deepEqual(missing.json().error, { code: 401, title: 'Unauthorized', message: 'This request needs an X-Auth-Token header carrying a valid token.', error_code: 'token_missing' });
    const empty = await app.inject({ url: '/v2/whoami', headers: { 'x-auth-token': '' } });
    assert.equal(empty.json().error.error_code, 'token_missing');
    const bad = await app.inject({ url: '/v2/whoami', headers: { 'x-auth-token': 'nope' } });
    assert.equal(bad.statusCode, 401);
    assert.equal(bad.json().error.error_code, 'token_invalid');
    await app.close();
  });

  it('sends keystonemiddleware\'s WWW-Authenticate challenge with every 401 behind Keystone', async () => {
    const challenge = "Keystone uri='http://127.0.0.1:15000/v3'";
    const { app } = await appWith(challenge);
    for (const headers of [{}, { 'x-auth-token': 'nope' }]) {
      const res = await app.inject({ url: '/v2/whoami', headers });
      assert.equal(res.statusCode, 401);
      assert.equal(res.headers['www-authenticate'], challenge);
    }
    const ok = await app.inject({ url: '/v2/whoami', headers: { 'x-auth-token': GOOD } });
    assert.equal(ok.headers['www-authenticate'], undefined);
    await app.close();
  });

  it('answers 503, not 401, when the identity source cannot be asked', async () => {
    const { app } = await appWith("Keystone uri='http://ks'");
    const res = await app.inject({ url: '/v2/whoami', headers: { 'x-auth-token': DOWN } });
    assert.equal(res.statusCode, 503);
    assert.equal(res.headers['www-authenticate'], undefined);
    assert.equal(res.json().error.error_code, 'identity_unavailable');
    assert.match(res.json().error.message, /unreachable/);
    await app.close();
  });

  it('sets request.caller and logs project and user on the request\'s lines, never the token', async () => {
    const { app, lines } = await appWith(null);
    const res = await app.inject({ url: '/v2/whoami', headers: { 'x-auth-token': GOOD } });
    assert.equal(res.statusCode, 200);
    // The caller carries the request's id, for the tasks it starts (Glance's context.request_id).
    const { request_id: requestId, ...who } = res.json();
    assert.deepEqual(who, { project_id: 'demo', user_id: 'alice', roles: ['member', 'reader'] });
    assert.ok(typeof requestId === 'string' && requestId.length > 0, `request_id ${requestId}`);
    const handling = lines.find((l) => l.msg === 'handling');
    const completed = lines.find((l) => l.msg === 'request completed');
    for (const line of [handling, completed]) {
      assert.equal(line?.project_id, 'demo');
      assert.equal(line?.user_id, 'alice');
    }
    await app.inject({ url: '/v2/whoami', headers: { 'x-auth-token': 'nope-secret' } });
    assert.ok(lines.every((l) => !JSON.stringify(l).includes(GOOD) && !JSON.stringify(l).includes('nope-secret')));
    await app.close();
  });
});
