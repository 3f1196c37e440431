import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Quotas, UNLIMITED, checkHold, parseQuotaConfig } from '../../../core/quota.js';
import { PirError } from '../../../core/errors.js';
import { ConfigError, loadConfig } from '../../../infra/config.js';
import { SqliteQuotaStore } from '../../../infra/embedded/sqlite-quota-store.js';
import type { ImageDoc } from '../../../schemas/image.js';

const MiB = 1024 * 1024;

describe('quota configuration', () => {
  it('reads defaults and per-project limits; unset limits are unlimited', () => {
    const config = parseQuotaConfig('{"default": {"image_count_total": 100, "image_size_total": 1024}, "projects": {"p1": {"image_count_uploading": 2}}}');
    assert.deepEqual(config.default, { ...UNLIMITED, image_count_total: 100, image_size_total: 1024 });
    assert.deepEqual(config.projects.p1, { image_count_uploading: 2 });
    const quotas = new Quotas(null, config);
    assert.deepEqual(quotas.limitsFor('p1'), { ...UNLIMITED, image_count_total: 100, image_size_total: 1024, image_count_uploading: 2 });
    assert.equal(quotas.limitsFor('other').image_count_uploading, -1);
  });
  it('refuses what it does not understand, naming it', () => {
    assert.throws(() => parseQuotaConfig('nope'), /not JSON/);
    assert.throws(() => parseQuotaConfig('{"defaults": {}}'), /unknown key 'defaults'/);
    assert.throws(() => parseQuotaConfig('{"default": {"image_count": 1}}'), /unknown limit 'image_count'/);
    assert.throws(() => parseQuotaConfig('{"default": {"image_count_total": -2}}'), /-1 for unlimited/);
    assert.throws(() => parseQuotaConfig('{"default": {"image_count_total": 1.5}}'), /whole number/);
    assert.throws(() => parseQuotaConfig('{"projects": []}'), /"projects" must be an object/);
  });
  it('loads PIR_QUOTAS and the egress settings through the config module', () => {
    assert.equal(loadConfig({}).quotas, null);
    assert.equal(loadConfig({ PIR_QUOTAS: '{"default": {"image_count_total": 3}}' }).quotas?.default.image_count_total, 3);
    assert.throws(() => loadConfig({ PIR_QUOTAS: '{' }), (e: Error) => e instanceof ConfigError && /^PIR_QUOTAS: not JSON/.test(e.message));
    assert.throws(() => loadConfig({ PIR_QUOTAS: '{}', PIR_QUOTAS_FILE: '/x' }), /set one of them/);
    assert.throws(() => loadConfig({ PIR_QUOTAS_FILE: '/no/such/file.json' }), /PIR_QUOTAS_FILE: cannot read/);
    const egress = loadConfig({ PIR_EGRESS_ALLOWLIST: '10.0.0.0/8, mirror.internal:8080', PIR_EGRESS_TIMEOUT_SECONDS: '30' }).egress;
    assert.equal(egress.allowList.length, 2);
    assert.equal(egress.totalTimeoutMs, 30_000);
    assert.deepEqual(egress.ports, [80, 443]);
    assert.throws(() => loadConfig({ PIR_EGRESS_ALLOWLIST: '10.0.0.0/40' }), /PIR_EGRESS_ALLOWLIST: "10.0.0.0\/40" is not a CIDR/);
  });
});

describe('quota holds', () => {
  it('checks only resources that grow, against the other holdings', () => {
    const current = [{ key: 'a', amounts: { image_size_total: 4 }, at: '' }, { key: 'b', amounts: { image_size_total: 5 }, at: '' }];
    assert.equal(checkHold(current, 'a', { image_size_total: 5 }, { image_size_total: 10 }), null);
    assert.deepEqual(checkHold(current, 'a', { image_size_total: 6 }, { image_size_total: 10 }), { resource: 'image_size_total', limit: 10, usage: 9, delta: 2 });
    assert.equal(checkHold(current, 'a', { image_size_total: 1 }, { image_size_total: 3 }), null); // shrinking, though over
  });

  it('refuses with 413 quota_exceeded and a Glance-like message in MiB', async () => {
    const quotas = new Quotas(new SqliteQuotaStore({ path: ':memory:' }), { default: { ...UNLIMITED, image_size_total: 2 }, projects: {} });
    await quotas.reserveFlight('p', 'i1', MiB + 1);
    await assert.rejects(quotas.reserveFlight('p', 'i2', MiB), (e: unknown) => e instanceof PirError && e.kind === 'too_large' && e.code === 'quota_exceeded'
      && /Project p is over a limit for \[Resource image_size_total is over limit of 2 due to current usage 2 and delta 1\]/.test(e.message));
    assert.equal(await quotas.flightRoom('p', 'i2'), MiB - 1);
  });

  it('settles from the image: in flight keeps the hold; active holds the size; deleted holds nothing', async () => {
    const store = new SqliteQuotaStore({ path: ':memory:' });
    const quotas = new Quotas(store, { default: UNLIMITED, projects: {} });
    const doc = (status: ImageDoc['status'], size: number | null, updated_at: string) => ({ id: 'img', owner: 'p', status, size, updated_at }) as ImageDoc;
    await quotas.reserveImage('p', 'img');
    await quotas.reserveFlight('p', 'img', 3 * MiB);
    await quotas.settle('img', async () => doc('importing', null, new Date().toISOString()));
    assert.equal((await quotas.usage('p')).image_count_uploading.usage, 1);
    await new Promise((r) => setTimeout(r, 5));
    const activeAt = new Date().toISOString();
    await quotas.settle('img', async () => doc('active', 5 * MiB, activeAt));
    assert.deepEqual(await quotas.usage('p'), {
      image_size_total: { limit: -1, usage: 5 }, image_stage_total: { limit: -1, usage: 0 },
      image_count_total: { limit: -1, usage: 1 }, image_count_uploading: { limit: -1, usage: 0 },
    });
    // A hold taken after the settling write (a new upload) survives a late settle of the old state.
    await new Promise((r) => setTimeout(r, 5));
    await quotas.reserveFlight('p', 'img', MiB);
    await quotas.settle('img', async () => doc('queued', null, activeAt));
    assert.equal((await quotas.usage('p')).image_count_uploading.usage, 1);
    await quotas.settle('img', async () => doc('deleted', 5 * MiB, new Date().toISOString()));
    assert.deepEqual(await store.holdings('p'), []);
  });

  it('does nothing when quotas are off: usage is {} as Glance without unified limits', async () => {
    const quotas = new Quotas(null, { default: UNLIMITED, projects: {} });
    await quotas.reserveImage('p', 'x');
    await quotas.reserveFlight('p', 'x', 10 ** 12);
    assert.deepEqual(await quotas.usage('p'), {});
  });
});
