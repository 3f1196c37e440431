import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { imageEndpoint } from '../../../client/index.js';
import { CredentialsError, UsageError, describeError, EXIT } from '../../../cli/exit-codes.js';
import { configPath, connect, resolveSettings } from '../../../cli/settings.js';
import { AuthError, ImageRefusedError, NotFoundError, PirApiError, TransportError } from '../../../client/errors.js';

describe('pir client settings', () => {
  let dir: string;
  let config: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pir-settings-'));
    config = join(dir, 'config.json');
    await writeFile(config, JSON.stringify({ default_profile: 'a', profiles: { a: { url: 'http://a:1', token: 'ta' }, b: { url: 'http://b:2', os_auth_url: 'http://k/v3' } } }), { mode: 0o600 });
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('flags win over the environment, which wins over the profile', () => {
    const env = { PIR_CONFIG: config, PIR_TOKEN: 'from-env' };
    assert.deepEqual(resolveSettings({}, env).settings, { url: 'http://a:1', token: 'from-env' });
    assert.deepEqual(resolveSettings({ token: 'from-flag', profile: 'b' }, env).settings, { url: 'http://b:2', token: 'from-flag', os_auth_url: 'http://k/v3' });
    assert.match(resolveSettings({}, env).source, /profile 'a'/);
  });

  it('finds ~/.config/pir/config.json by default and honours XDG_CONFIG_HOME', () => {
    assert.deepEqual(configPath({ HOME: '/h' }), { path: '/h/.config/pir/config.json', explicit: false });
    assert.equal(configPath({ HOME: '/h', XDG_CONFIG_HOME: '/x' }).path, '/x/pir/config.json');
  });

  it('refuses a config file others may read, an unknown profile, an unknown key, and bad JSON', async () => {
    await chmod(config, 0o640);
    assert.throws(() => resolveSettings({}, { PIR_CONFIG: config }), (e: Error) => e instanceof UsageError && /mode 0640.*chmod 600/.test(e.message));
    await chmod(config, 0o600);
    assert.throws(() => resolveSettings({ profile: 'zz' }, { PIR_CONFIG: config }), /no profile 'zz'.*profiles there: a, b/);
    const odd = join(dir, 'odd.json');
    await writeFile(odd, JSON.stringify({ profiles: { p: { tokn: 'x' } } }), { mode: 0o600 });
    assert.throws(() => resolveSettings({}, { PIR_CONFIG: odd }), /unknown key 'tokn'/);
    await writeFile(odd, '{', { mode: 0o600 });
    assert.throws(() => resolveSettings({}, { PIR_CONFIG: odd }), /not valid JSON/);
    assert.throws(() => resolveSettings({}, { PIR_CONFIG: join(dir, 'missing.json') }), /cannot read the config file/);
    assert.deepEqual(resolveSettings({}, { HOME: dir }).settings, {}); // no file at the default place: fine
  });

  it('without a token or a Keystone login, says how to give one', async () => {
    await assert.rejects(connect({}, { HOME: dir }), (e: Error) => e instanceof CredentialsError && /pass --token, set PIR_TOKEN/.test(e.message));
    await assert.rejects(connect({ url: 'ftp://x' }, { HOME: dir, PIR_TOKEN: 't' }), /must start with http/);
    await assert.rejects(connect({ osAuthUrl: 'http://k/v3' }, { HOME: dir }), /needs --os-username and --os-password/);
    assert.deepEqual(await connect({}, { HOME: dir, PIR_TOKEN: 't' }), { url: 'http://127.0.0.1:9292', token: 't', source: 'flags and environment', idleTimeoutMs: 600_000, keystone: false });
    // The idle timeout: the flag (seconds, parsed by commander) over PIR_HTTP_TIMEOUT over 600 s.
    assert.equal((await connect({ httpTimeout: 2 }, { HOME: dir, PIR_TOKEN: 't', PIR_HTTP_TIMEOUT: '9' })).idleTimeoutMs, 2000);
    assert.equal((await connect({}, { HOME: dir, PIR_TOKEN: 't', PIR_HTTP_TIMEOUT: '9' })).idleTimeoutMs, 9000);
    await assert.rejects(connect({}, { HOME: dir, PIR_TOKEN: 't', PIR_HTTP_TIMEOUT: '-1' }), /PIR_HTTP_TIMEOUT must be a number of seconds > 0/);
  });

  it('takes a PIR URL that ends in a version (/v2, /v2.1), as glanceclient does: every call adds /v2', async () => {
    for (const [given, used] of [['http://h:1/v2', 'http://h:1'], ['http://h:1/v2/', 'http://h:1'], ['https://cloud.example/image/v2.1', 'https://cloud.example/image'], ['http://h:1/', 'http://h:1'], ['http://h:1/v2x', 'http://h:1/v2x']]) {
      assert.equal((await connect({ url: given }, { HOME: dir, PIR_TOKEN: 't' })).url, used, given);
    }
  });

  it('never repeats the user:password of a URL in a message', async () => {
    await assert.rejects(connect({ url: 'ftp://me:secret@h/' }, { HOME: dir, PIR_TOKEN: 't' }), (e: Error) => /'ftp:\/\/\*\*\*@h\/' must start with http/.test(e.message) && !/secret/.test(e.message));
    const unreachable = describeError(new TransportError('http://h:1', Object.assign(new Error('x'), { code: 'ECONNREFUSED' })), { url: 'http://me:secret@h:1' });
    assert.match(unreachable.message, /Is PIR running there\? Point the command at it with --url or PIR_URL \(now http:\/\/\*\*\*@h:1\)\.$/);
  });

  it('says Keystone, not PIR, when the Keystone login cannot be made, and gives no token hint for it', () => {
    const refused = Object.assign(new Error('x'), { code: 'ECONNREFUSED' });
    const down = describeError(new TransportError('http://k:5000', refused, 'Keystone'), { url: 'http://pir:9292' });
    assert.equal(down.code, EXIT.failure);
    assert.equal(down.message, 'cannot reach http://k:5000: ECONNREFUSED. Is Keystone running there? Check --os-auth-url (OS_AUTH_URL, or the profile\'s "os_auth_url").');
    const login = describeError(new AuthError(401, 'keystone_refused', 'Keystone at http://k refused the login for user \'u\': check --os-username.', 'POST', '/v3/auth/tokens', null));
    assert.equal(login.code, EXIT.auth);
    assert.doesNotMatch(login.message, /--token/);
    const body = { error: { code: 401, message: 'The token is not valid here.', error_code: 'token_invalid' } };
    assert.match(describeError(PirApiError.from(401, body, 'GET', '/v2/images')).message, /Check the token \(--token/);
    assert.match(describeError(PirApiError.from(401, body, 'GET', '/v2/images'), { keystone: true }).message, /The token came from the Keystone login \(--os-auth-url\)/);
  });

  it('picks the image endpoint of the catalog by interface and region', () => {
    const session = { token: 't', catalog: [{ type: 'image', endpoints: [
      { interface: 'internal', region: 'r1', url: 'http://int:9292' },
      { interface: 'public', region: 'r1', url: 'http://pub1:9292/v2' },
      { interface: 'public', region: 'r2', url: 'http://pub2:9292/' },
      { interface: 'admin', region: 'r1', url: 'http://adm:9292/v2.0/' },
    ] }] };
    assert.equal(imageEndpoint(session), 'http://pub1:9292');
    assert.equal(imageEndpoint(session, 'public', 'r2'), 'http://pub2:9292');
    assert.equal(imageEndpoint(session, 'internal'), 'http://int:9292');
    assert.equal(imageEndpoint(session, 'admin'), 'http://adm:9292');
    assert.equal(imageEndpoint(session, 'other'), null);
  });

  it('maps errors to the documented exit codes', () => {
    const body = (code: string) => ({ error: { code: 0, message: 'm', error_code: code } });
    assert.equal(describeError(PirApiError.from(404, body('not_found'), 'GET', '/')).code, EXIT.notFound);
    assert.ok(PirApiError.from(404, body('x'), 'GET', '/') instanceof NotFoundError);
    assert.ok(PirApiError.from(401, body('x'), 'GET', '/') instanceof AuthError);
    assert.equal(describeError(PirApiError.from(401, body('bad_token'), 'GET', '/')).code, EXIT.auth);
    assert.equal(describeError(new ImageRefusedError('i', { stage: 'inspect', code: 'c', message: 'm' })).code, EXIT.refused);
    assert.equal(describeError(new UsageError('u')).code, EXIT.usage);
    const server = describeError(PirApiError.from(500, body('internal_error'), 'GET', '/'));
    assert.equal(server.code, EXIT.failure);
    assert.match(server.message, /HTTP 500, internal_error/);
    assert.equal(PirApiError.from(502, 'Bad gateway', 'GET', '/').errorCode, 'http_502');
  });
});
