/**
 * The Keystone adapter against the real Keystone of infra/local (no simulation): mapping,
 * refusals, the validation cache (bounded, never past a token's expiry, brief for refusals),
 * service-token renewal, and Keystone unreachable → unavailable (503), never unauthorized.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { pino } from 'pino';
import { PirError } from '../../core/errors.js';
import { KeystoneAuthenticator, type KeystoneSettings } from '../../infra/identity/keystone.js';
import { openAuthenticator } from '../../infra/identity/index.js';
import { ConfigError, loadConfig } from '../../infra/config.js';
import { keystoneCheck } from '../../infra/telemetry/health.js';
import { issueSystemToken, issueToken, KEYSTONE, revokeToken, type IssuedToken } from '../support/keystone.js';
import { freePort } from '../support/pir-process.js';
import { requireServices, serviceUp } from '../support/services.js';

const silent = pino({ level: 'silent' });
const settings = (over: Partial<KeystoneSettings> = {}): KeystoneSettings => ({
  url: KEYSTONE, username: 'pir', password: 'pir-pass', projectName: 'service',
  userDomainName: 'Default', projectDomainName: 'Default',
  cacheSize: 100, cacheSeconds: 300, negativeCacheSeconds: 10, timeoutSeconds: 10, ...over,
});

/** A clock the test moves forward, to reach expiries without waiting for them. */
function clock() {
  let offset = 0;
  return { now: () => Date.now() + offset, advance(ms: number) { offset += ms; } };
}

function isPirError(kind: string, code?: string) {
  return (error: unknown) => {
    assert.ok(error instanceof PirError, String(error));
    assert.equal(error.kind, kind, error.message);
    if (code) assert.equal(error.code, code);
    return true;
  };
}

describe('Keystone identity adapter (real Keystone)', () => {
  let demo: IssuedToken;
  let reader: IssuedToken;
  let other: IssuedToken;

  before(async () => {
    if (!(await serviceUp('keystone')).up) return; // each test then fails (CI) or skips
    [demo, reader, other] = await Promise.all([issueToken('demo', 'demo'), issueToken('demo-reader', 'demo'), issueToken('other', 'other')]);
  });

  it('maps project, user and role names, and answers again from its cache', async (t) => {
    if (!(await requireServices(t, ['keystone']))) return;
    const auth = new KeystoneAuthenticator(settings(), silent);
    const caller = await auth.authenticate(demo.token);
    assert.deepEqual(caller, { project_id: demo.projectId, user_id: demo.userId, roles: demo.roles });
    assert.ok(caller.roles.includes('member') && caller.roles.includes('reader'), `roles: ${caller.roles}`);
    assert.deepEqual((await auth.authenticate(reader.token)).roles, ['reader']);
    assert.notEqual((await auth.authenticate(other.token)).project_id, demo.projectId);
    assert.equal(auth.stats.validations, 3);
    assert.equal(auth.stats.serviceLogins, 1, 'one service login serves every validation');
    await auth.authenticate(demo.token);
    assert.equal(auth.stats.validations, 3);
    assert.equal(auth.stats.cacheHits, 1);
    assert.equal(auth.challenge, `Keystone uri='${KEYSTONE}'`);
  });

  it('shares one validation between concurrent requests with the same token', async (t) => {
    if (!(await requireServices(t, ['keystone']))) return;
    const auth = new KeystoneAuthenticator(settings(), silent);
    const callers = await Promise.all(Array.from({ length: 20 }, () => auth.authenticate(demo.token)));
    assert.ok(callers.every((c) => c.user_id === demo.userId));
    assert.equal(auth.stats.validations, 1);
  });

  it('never trusts a validation past the token\'s expiry, nor past the cache time', async (t) => {
    if (!(await requireServices(t, ['keystone']))) return;
    const c = clock();
    const long = new KeystoneAuthenticator(settings({ cacheSeconds: 86400 }), silent, c.now);
    await long.authenticate(demo.token);
    assert.equal(long.cachedUntil(demo.token), demo.expiresAt, 'a cache time beyond the token\'s life is cut to its expires_at');
    c.advance(demo.expiresAt - c.now() + 1);
    assert.equal(long.cachedUntil(demo.token), demo.expiresAt);
    await long.authenticate(demo.token); // past expiry (on PIR's clock): asks Keystone again
    assert.equal(long.stats.validations, 2);

    const short = new KeystoneAuthenticator(settings({ cacheSeconds: 300 }), silent);
    const before = Date.now();
    await short.authenticate(demo.token);
    const until = short.cachedUntil(demo.token)!;
    assert.ok(until >= before + 300_000 && until <= Date.now() + 300_000 && until < demo.expiresAt, `cached until ${until}`);
  });

  it('keeps at most cacheSize validations, dropping the least recently used', async (t) => {
    if (!(await requireServices(t, ['keystone']))) return;
    const auth = new KeystoneAuthenticator(settings({ cacheSize: 2 }), silent);
    await auth.authenticate(demo.token);
    await auth.authenticate(reader.token);
    await auth.authenticate(demo.token); // demo is now the most recent
    await auth.authenticate(other.token); // evicts reader
    assert.equal(auth.stats.validations, 3);
    assert.equal(auth.cachedUntil(reader.token), undefined);
    assert.ok(auth.cachedUntil(demo.token) && auth.cachedUntil(other.token));
    await auth.authenticate(reader.token);
    assert.equal(auth.stats.validations, 4);
  });

  it('refuses a bad token as unauthorized, and remembers the refusal only briefly', async (t) => {
    if (!(await requireServices(t, ['keystone']))) return;
    const c = clock();
    const auth = new KeystoneAuthenticator(settings({ negativeCacheSeconds: 10 }), silent, c.now);
    const bogus = 'gAAAAABnot-a-real-fernet-token-' + Date.now();
    await assert.rejects(auth.authenticate(bogus), isPirError('unauthorized', 'token_invalid'));
    await assert.rejects(auth.authenticate(bogus), isPirError('unauthorized', 'token_invalid'));
    assert.equal(auth.stats.validations, 1);
    c.advance(10_001);
    await assert.rejects(auth.authenticate(bogus), isPirError('unauthorized', 'token_invalid'));
    assert.equal(auth.stats.validations, 2);
    await assert.rejects(auth.authenticate('x'.repeat(9000)), isPirError('unauthorized', 'token_invalid'));
    for (const odd of [`${demo.token} `, `${demo.token}\t`, 'caf\u00e9', 'a b']) {
      await assert.rejects(auth.authenticate(odd), isPirError('unauthorized', 'token_invalid'));
    }
    assert.equal(auth.stats.validations, 2, 'oversized and odd tokens are refused without asking Keystone');
  });

  it('refuses a system-scoped token as forbidden (403 token_unscoped): images belong to projects', async (t) => {
    if (!(await requireServices(t, ['keystone']))) return;
    const auth = new KeystoneAuthenticator(settings(), silent);
    const system = await issueSystemToken();
    await assert.rejects(auth.authenticate(system), (error: unknown) =>
      isPirError('forbidden', 'token_unscoped')(error) && /system- or domain-scoped/.test((error as Error).message));
  });

  it('sees a revocation once the cached validation runs out', async (t) => {
    if (!(await requireServices(t, ['keystone']))) return;
    const victim = await issueToken('demo', 'demo');
    const c = clock();
    const auth = new KeystoneAuthenticator(settings({ cacheSeconds: 60 }), silent, c.now);
    await auth.authenticate(victim.token);
    await revokeToken(victim.token);
    assert.equal((await auth.authenticate(victim.token)).user_id, victim.userId, 'cached: the trade keystonemiddleware makes too');
    c.advance(60_001);
    await assert.rejects(auth.authenticate(victim.token), isPirError('unauthorized', 'token_invalid'));
  });

  it('renews its service token before it expires', async (t) => {
    if (!(await requireServices(t, ['keystone']))) return;
    const c = clock();
    const auth = new KeystoneAuthenticator(settings({ cacheSeconds: 1 }), silent, c.now);
    await auth.authenticate(demo.token);
    assert.equal(auth.stats.serviceLogins, 1);
    // Keystone's tokens here live an hour; PIR renews 2 minutes before the end.
    c.advance(3600_000 - 119_000);
    await auth.authenticate(reader.token);
    assert.equal(auth.stats.serviceLogins, 2);
  });

  it('answers unavailable (503), not unauthorized, when Keystone is unreachable or refuses PIR itself', async (t) => {
    if (!(await requireServices(t, ['keystone']))) return;
    const port = await freePort();
    const nowhere = new KeystoneAuthenticator(settings({ url: `http://127.0.0.1:${port}/v3`, timeoutSeconds: 2 }), silent);
    await assert.rejects(nowhere.authenticate(demo.token), (error: unknown) =>
      isPirError('unavailable', 'identity_unavailable')(error) && /127\.0\.0\.1:\d+\/v3 is unreachable \(ECONNREFUSED\)/.test((error as Error).message));
    assert.equal(nowhere.cachedUntil(demo.token), undefined, 'an outage is never cached');

    const wrongPassword = new KeystoneAuthenticator(settings({ password: 'wrong' }), silent);
    await assert.rejects(wrongPassword.authenticate(demo.token), (error: unknown) =>
      isPirError('unavailable', 'identity_unavailable')(error) && /refused PIR's service credentials/.test((error as Error).message));

    // A user without the service or admin role may not validate someone else's token (403).
    const notAService = new KeystoneAuthenticator(settings({ username: 'other', password: 'other-pass', projectName: 'other' }), silent);
    await assert.rejects(notAService.authenticate(demo.token), (error: unknown) =>
      isPirError('unavailable', 'identity_unavailable')(error) && /service or admin role/.test((error as Error).message));
  });

  it('stops start-up when Keystone refuses PIR\'s service credentials, and /readyz fails while they are refused; an outage does neither', async (t) => {
    if (!(await requireServices(t, ['keystone']))) return;
    const base = loadConfig({ PIR_DATA_DIR: '/tmp', PIR_KEYSTONE_URL: KEYSTONE, PIR_KEYSTONE_USERNAME: 'pir', PIR_KEYSTONE_PASSWORD: 'wrong' });
    await assert.rejects(openAuthenticator(base, null, silent), (error: Error) =>
      error instanceof ConfigError && /^PIR_KEYSTONE_PASSWORD: Keystone refused PIR's service credentials/.test(error.message));
    const port = await freePort();
    const down = await openAuthenticator({ ...base, keystone: { ...base.keystone!, url: `http://127.0.0.1:${port}/v3`, timeoutSeconds: 2 } }, null, silent);
    await down.close();
    // Readiness: Keystone answers GET /v3, but PIR's own login is refused.
    const refused = new KeystoneAuthenticator(settings({ password: 'wrong' }), silent);
    await assert.rejects(keystoneCheck(KEYSTONE, 5000, () => refused.ready()).check(), /refused PIR's service credentials/);
    const good = new KeystoneAuthenticator(settings(), silent);
    await keystoneCheck(KEYSTONE, 5000, () => good.ready()).check();
    await good.close();
  });
});
