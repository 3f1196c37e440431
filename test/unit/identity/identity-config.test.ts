import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../../infra/config.js';

const KS = { PIR_KEYSTONE_URL: 'http://keystone:5000', PIR_KEYSTONE_USERNAME: 'pir', PIR_KEYSTONE_PASSWORD: 'secret' };

describe('identity config', () => {
  it('defaults to the tokens file identity with no file', () => {
    const config = loadConfig({});
    assert.equal(config.tokensFile, null);
    assert.equal(config.keystone, null);
    assert.match(loadConfig({ PIR_TOKENS_FILE: 'tokens.json' }).tokensFile!, /^\/.*\/tokens\.json$/);
  });

  it('reads Keystone settings with keystonemiddleware-like defaults, with or without /v3', () => {
    assert.deepEqual(loadConfig(KS).keystone, {
      url: 'http://keystone:5000/v3', username: 'pir', password: 'secret', projectName: 'service',
      userDomainName: 'Default', projectDomainName: 'Default',
      cacheSize: 10_000, cacheSeconds: 300, negativeCacheSeconds: 10, timeoutSeconds: 10,
    });
    assert.equal(loadConfig({ ...KS, PIR_KEYSTONE_URL: 'https://id.example/identity/v3/' }).keystone!.url, 'https://id.example/identity/v3');
    const tuned = loadConfig({ ...KS, PIR_KEYSTONE_PROJECT: 'svc', PIR_KEYSTONE_USER_DOMAIN_NAME: 'ops', PIR_KEYSTONE_PROJECT_DOMAIN_NAME: 'infra',
      PIR_KEYSTONE_CACHE_SIZE: '5', PIR_KEYSTONE_CACHE_SECONDS: '60', PIR_KEYSTONE_NEGATIVE_CACHE_SECONDS: '0', PIR_KEYSTONE_TIMEOUT_SECONDS: '3' }).keystone!;
    assert.deepEqual([tuned.projectName, tuned.userDomainName, tuned.projectDomainName, tuned.cacheSize, tuned.cacheSeconds, tuned.negativeCacheSeconds, tuned.timeoutSeconds],
      ['svc', 'ops', 'infra', 5, 60, 0, 3]);
  });

  it('names the variable in every refusal', () => {
    const refuses = (env: Record<string, string>, variable: RegExp) =>
      assert.throws(() => loadConfig(env), (e: Error) => e instanceof ConfigError && variable.test(e.message));
    refuses({ PIR_KEYSTONE_URL: 'keystone:5000' }, /^PIR_KEYSTONE_URL: /);
    refuses({ PIR_KEYSTONE_URL: 'ftp://keystone' }, /^PIR_KEYSTONE_URL: .*http: or https:/);
    refuses({ PIR_KEYSTONE_URL: 'http://keystone:5000', PIR_KEYSTONE_PASSWORD: 'x' }, /^PIR_KEYSTONE_USERNAME: must be set/);
    refuses({ PIR_KEYSTONE_URL: 'http://keystone:5000', PIR_KEYSTONE_USERNAME: 'x' }, /^PIR_KEYSTONE_PASSWORD: must be set/);
    refuses({ ...KS, PIR_KEYSTONE_CACHE_SIZE: '0' }, /^PIR_KEYSTONE_CACHE_SIZE: /);
    refuses({ ...KS, PIR_KEYSTONE_CACHE_SECONDS: 'soon' }, /^PIR_KEYSTONE_CACHE_SECONDS: /);
    refuses({ ...KS, PIR_TOKENS_FILE: 'tokens.json' }, /^PIR_TOKENS_FILE, PIR_KEYSTONE_URL: choose one identity source/);
  });
});
