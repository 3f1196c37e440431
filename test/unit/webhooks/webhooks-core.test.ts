/** Pure parts of webhooks: signatures (checked by the standardwebhooks package), sealed secrets, rotation, the schedule, matching. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { ConfigError, parseSchedule } from '../../../infra/config.js';
import { scheduledDelay } from '../../../core/webhooks/jobs.js';
import { eventMatches, subscriptionWants } from '../../../core/webhooks/matching.js';
import { makeDoc } from '../../contract/helpers.js';
import { SecretBox, newSigningSecret, parseSecretKey } from '../../../core/webhooks/secret-box.js';
import { liveSecrets, rotateSecrets, sealNewSecret } from '../../../core/webhooks/secrets.js';
import { signatureHeader } from '../../../core/webhooks/signing.js';
import type { Subscription } from '../../../core/webhooks/model.js';

describe('webhook signatures', () => {
  it('are accepted by the standardwebhooks package, each of several during a rotation', () => {
    const [a, b] = [newSigningSecret(), newSigningSecret()];
    const ts = Math.floor(Date.now() / 1000);
    const body = JSON.stringify({ type: 'image.active', timestamp: new Date().toISOString(), data: { id: 'x', name: 'ünïcode' } });
    const header = signatureHeader([a, b], 'msg_1', ts, body);
    const headers = { 'webhook-id': 'msg_1', 'webhook-timestamp': String(ts), 'webhook-signature': header };
    assert.deepEqual((new Webhook(a).verify(body, headers) as { data: unknown }).data, { id: 'x', name: 'ünïcode' });
    new Webhook(b).verify(body, headers);
    assert.throws(() => new Webhook(newSigningSecret()).verify(body, headers));
    assert.throws(() => new Webhook(a).verify(body + ' ', headers), 'a changed body fails');
    assert.equal(new Webhook(a).sign('msg_1', new Date(ts * 1000), body), signatureHeader([a], 'msg_1', ts, body));
  });
});

describe('sealed secrets', () => {
  const box = new SecretBox(randomBytes(32));
  it('round-trip, do not contain the secret, and do not open under another key or another webhook id', () => {
    const secret = newSigningSecret();
    const sealed = box.seal(secret, 'wh-1');
    assert.ok(!sealed.includes(secret.slice(6, 30)));
    assert.equal(box.open(sealed, 'wh-1'), secret);
    assert.throws(() => box.open(sealed, 'wh-2'));
    assert.throws(() => new SecretBox(randomBytes(32)).open(sealed, 'wh-1'));
    // Tamper with one ciphertext byte. (Overwriting the last two base64url characters with 'AA'
    // left the ciphertext unchanged whenever its last 10 bits were zero, 1 run in 1024.)
    const [version, iv, tag, body] = sealed.split('.');
    const tampered = Buffer.from(body!, 'base64url');
    tampered[tampered.length - 1] ^= 0x01;
    assert.throws(() => box.open([version, iv, tag, tampered.toString('base64url')].join('.'), 'wh-1'));
  });
  it('rotation keeps the old secret signing until the grace period ends', () => {
    const first = sealNewSecret(box, 'wh', '2026-01-01T00:00:00Z');
    const second = sealNewSecret(box, 'wh', '2026-01-02T00:00:00Z');
    const now = Date.now();
    const secrets = rotateSecrets([first.stored], second.stored, 60, now);
    const sub = { id: 'wh', secrets } as Subscription;
    assert.deepEqual(liveSecrets(box, sub, now), [second.secret, first.secret]);
    assert.deepEqual(liveSecrets(box, sub, now + 61_000), [second.secret]);
    assert.deepEqual(rotateSecrets([first.stored], second.stored, 0, now).length, 1, 'no grace: the old one goes at once');
  });
  it('the key is 32 bytes, hex or base64', () => {
    assert.equal(parseSecretKey('ab'.repeat(32)).length, 32);
    assert.equal(parseSecretKey(randomBytes(32).toString('base64')).length, 32);
    assert.throws(() => parseSecretKey('short'));
  });
});

describe('retry schedule and matching', () => {
  it('parses durations, refuses nonsense', () => {
    assert.deepEqual(parseSchedule('X', '5s,5m,30m,2h,500ms,1d'), [5000, 300_000, 1_800_000, 7_200_000, 500, 86_400_000]);
    assert.deepEqual(parseSchedule('X', '2'), [2000]);
    assert.throws(() => parseSchedule('X', '5s,,5m'), ConfigError);
    assert.throws(() => parseSchedule('X', 'soon'), ConfigError);
    assert.throws(() => parseSchedule('X', '8d'), ConfigError);
  });
  it('jitters each delay by at most ±10%', () => {
    const schedule = [1000, 60_000];
    assert.equal(scheduledDelay(schedule, 1, () => 0), 900);
    assert.equal(scheduledDelay(schedule, 1, () => 1), 1100);
    assert.equal(scheduledDelay(schedule, 2, () => 0.5), 60_000);
    assert.equal(scheduledDelay(schedule, 9, () => 0.5), 60_000, 'past the end: the last delay');
  });
  it('matches event types and patterns', () => {
    assert.ok(eventMatches(['image.active'], 'image.active'));
    assert.ok(!eventMatches(['image.active'], 'image.killed'));
    assert.ok(eventMatches(['image.*'], 'image.member.created'));
    assert.ok(eventMatches(['image.member.*'], 'image.member.deleted'));
    assert.ok(!eventMatches(['image.member.*'], 'image.updated'));
  });
});

describe('who a webhook tells of a deletion', () => {
  const sub = (project: string, allProjects = false): Subscription => ({
    id: `wh-${project}`, project_id: project, user_id: 'u', all_projects: allProjects, url: 'https://hooks.example.org/', events: ['image.*'],
    description: '', filters: {}, enabled: true, disabled_reason: null, disabled_at: null, consecutive_failures: 0,
    secrets: [], created_at: '2026-01-01T00:00:00.000Z', updated_at: '2026-01-01T00:00:00.000Z',
  });
  const doc = makeDoc({ owner: 'p1', visibility: 'shared', status: 'deleted' });
  doc.members = [{ member_id: 'p2', status: 'accepted', created_at: doc.created_at, updated_at: doc.created_at }];

  it('the owner and all_projects hear of it, an accepted member does not, whether or not the image is purged yet', () => {
    for (const current of [doc, null]) {
      assert.equal(subscriptionWants(sub('p1'), 'image.deleted', current, doc.id, 'p1'), true);
      assert.equal(subscriptionWants(sub('admin', true), 'image.deleted', current, doc.id, 'p1'), true);
      assert.equal(subscriptionWants(sub('p2'), 'image.deleted', current, doc.id, 'p1'), false);
    }
    assert.equal(subscriptionWants(sub('p2'), 'image.updated', { ...doc, status: 'active' }, doc.id, 'p1'), true, 'the member hears of the rest');
  });
});
