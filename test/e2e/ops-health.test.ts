/**
 * Health with a dependency down: a `pir api` whose PIR_REDIS_URL points at a closed port starts
 * (the api role needs Redis only to enqueue), answers /healthz, and /readyz answers 503 naming
 * the job queue; `pir doctor` says the same in plain words and exits 1. Then, with Redis
 * reachable, /readyz is 200 with every dependency's latency.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { makeTempDir, removeDir } from '../support/images.js';
import { runCli } from '../support/pir-cli.js';
import { freePort, startPirProcess, testLogDir, type PirProcess } from '../support/pir-process.js';
import { requireServices, services, uniqueName } from '../support/services.js';

const logDir = testLogDir('ops-health');

describe('readiness and pir doctor with a dependency down (distributed)', () => {
  const processes: PirProcess[] = [];
  let dir = '';
  after(async () => {
    await Promise.all(processes.map((p) => p.stop()));
    if (dir) await removeDir(dir);
  });

  async function envFor(redisUrl: string): Promise<Record<string, string>> {
    dir ||= await makeTempDir('pir-e2e-ops-');
    const run = uniqueName('ops').replace(/[^A-Za-z0-9]/g, '');
    const mongo = new URL(services.mongodbUrl);
    mongo.pathname = `/${run}`;
    return {
      PIR_DATA_DIR: join(dir, run),
      PIR_ADMIN_TOKEN: 'e2e-ops-token-0123456789abcdef0123456789',
      PIR_KAFKA_BROKERS: services.kafkaBrokers.join(','),
      PIR_REDIS_URL: redisUrl,
      PIR_MONGODB_URL: mongo.toString(),
      PIR_KAFKA_TOPIC: `pir.${run}`,
      PIR_REDIS_PREFIX: run,
    };
  }

  it('Redis down: /readyz 503 names the job queue; doctor explains and exits 1', async (t) => {
    if (!(await requireServices(t, ['kafka', 'mongodb']))) return;
    const closed = await freePort();
    const env = await envFor(`redis://pir:hunter2@127.0.0.1:${closed}`);
    const port = await freePort();
    const api = await startPirProcess('api', { ...env, PIR_PORT: String(port) }, logDir, 'api-redis-down');
    processes.push(api);
    assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    assert.equal(ready.status, 503);
    const body = await ready.json() as { status: string; checks: { name: string; kind: string; ok: boolean; error?: string }[] };
    assert.equal(body.status, 'not_ready');
    const queue = body.checks.find((c) => c.name === 'job_queue')!;
    assert.equal(queue.ok, false);
    assert.equal(queue.kind, 'redis');
    assert.ok(body.checks.filter((c) => c.name !== 'job_queue').every((c) => c.ok), JSON.stringify(body));
    assert.doesNotMatch(JSON.stringify(body), /hunter2/, 'no credentials in the answer');

    const doctor = await runCli(['doctor'], env);
    assert.equal(doctor.code, 1, doctor.stdout + doctor.stderr);
    assert.match(doctor.stdout, /PROBLEM +Redis: connect ECONNREFUSED 127\.0\.0\.1:\d+/);
    assert.match(doctor.stdout, /fix: No Redis answers at redis:\/\/\*\*\*@127\.0\.0\.1:\d+ .*Start Redis, or correct PIR_REDIS_URL/);
    assert.match(doctor.stdout, /ok +MongoDB: answers/);
    assert.match(doctor.stdout, /ok +Kafka: 1 broker/);
    assert.doesNotMatch(doctor.stdout, /hunter2/);
  });

  it('everything up: /readyz 200 with each dependency and its latency; doctor exits 0', async (t) => {
    if (!(await requireServices(t, ['kafka', 'mongodb', 'redis']))) return;
    const env = await envFor(services.redisUrl);
    const port = await freePort();
    const api = await startPirProcess('api', { ...env, PIR_PORT: String(port) }, logDir, 'api-all-up');
    processes.push(api);
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    const body = await ready.json() as { checks: { name: string; kind: string; ok: boolean; latency_ms: number }[] };
    assert.equal(ready.status, 200, JSON.stringify(body));
    assert.deepEqual(body.checks.map((c) => `${c.name}:${c.kind}`), ['manifest_store:mongodb', 'event_bus:kafka', 'job_queue:redis', 'blob_store:filesystem', 'blob_staging:filesystem']);
    for (const c of body.checks) assert.ok(c.latency_ms >= 0 && c.latency_ms < 3000, `${c.name} ${c.latency_ms}`);
    const doctor = await runCli(['doctor', '--format', 'json'], env);
    assert.equal(doctor.code, 0, doctor.stdout + doctor.stderr);
    const report = JSON.parse(doctor.stdout) as { ok: boolean; findings: { what: string; level: string }[] };
    assert.equal(report.ok, true);
    assert.deepEqual(report.findings.filter((f) => f.level !== 'ok'), []);
    assert.match(doctor.stdout, /webhook-secret-key is the key the other PIR processes on this database use/);

    // Another machine: its own data directory, and a key of its own or none.
    const otherKey = await runCli(['doctor'], { ...env, PIR_DATA_DIR: join(dir, 'other-machine'), PIR_WEBHOOK_SECRET_KEY: 'ab'.repeat(32) });
    assert.equal(otherKey.code, 1, otherKey.stdout);
    assert.match(otherKey.stdout, /PROBLEM +webhook secret key: PIR_WEBHOOK_SECRET_KEY is not the key the other PIR processes on this database seal webhook secrets with/);
    assert.match(otherKey.stdout, /fix: Give every process the same key with PIR_WEBHOOK_SECRET_KEY/);
    const noKey = await runCli(['doctor'], { ...env, PIR_DATA_DIR: join(dir, 'other-machine') });
    assert.equal(noKey.code, 1, noKey.stdout);
    assert.match(noKey.stdout, /PROBLEM +webhook secret key: other PIR processes on this database seal webhook secrets with a key, and this one has none/);
    const sameKey = await runCli(['doctor'], { ...env, PIR_DATA_DIR: join(dir, 'other-machine'), PIR_WEBHOOK_SECRET_KEY: (await readFile(join(env.PIR_DATA_DIR!, 'webhook-secret-key'), 'utf8')).trim() });
    assert.equal(sameKey.code, 0, sameKey.stdout);
    assert.match(sameKey.stdout, /ok +webhook secret key: PIR_WEBHOOK_SECRET_KEY is the key the other PIR processes on this database use/);
  });

  it('doctor checks Keystone with PIR\'s service user: a wrong password is named, the right one passes', async (t) => {
    if (!(await requireServices(t, ['keystone']))) return;
    dir ||= await makeTempDir('pir-e2e-ops-');
    const env = { PIR_DATA_DIR: join(dir, 'keystone'), PIR_KEYSTONE_URL: services.keystoneUrl, PIR_KEYSTONE_USERNAME: 'pir', PIR_KEYSTONE_PROJECT: 'service' };
    const wrong = await runCli(['doctor'], { ...env, PIR_KEYSTONE_PASSWORD: 'not-the-password' });
    assert.equal(wrong.code, 1);
    assert.match(wrong.stdout, /PROBLEM +Keystone: Keystone refused PIR's service user pir \(401\)/);
    assert.match(wrong.stdout, /fix: Correct PIR_KEYSTONE_USERNAME and PIR_KEYSTONE_PASSWORD/);
    assert.doesNotMatch(wrong.stdout, /not-the-password/);
    const right = await runCli(['doctor'], { ...env, PIR_KEYSTONE_PASSWORD: 'pir-pass' });
    assert.equal(right.code, 0, right.stdout);
    assert.match(right.stdout, /ok +Keystone: .* accepts PIR's service user pir/);
  });

  it('doctor checks the S3 bucket by storing a probe: a server that does not answer and a missing bucket get different advice', async (t) => {
    if (!(await requireServices(t, ['s3']))) return;
    dir ||= await makeTempDir('pir-e2e-ops-');
    const s3 = {
      PIR_DATA_DIR: join(dir, 's3'), PIR_S3_ACCESS_KEY_ID: services.s3.accessKeyId, PIR_S3_SECRET_ACCESS_KEY: services.s3.secretAccessKey,
      PIR_S3_REGION: services.s3.region, PIR_S3_FORCE_PATH_STYLE: 'true', PIR_S3_PREFIX: `${uniqueName('doctor')}/`,
    };
    const down = await runCli(['doctor'], { ...s3, PIR_S3_ENDPOINT: `http://127.0.0.1:${await freePort()}`, PIR_S3_BUCKET: services.s3.bucket });
    assert.equal(down.code, 1, down.stdout);
    assert.match(down.stdout, /PROBLEM +S3 bucket: .*ECONNREFUSED/);
    assert.match(down.stdout, /fix: No S3 server answers at http:\/\/127\.0\.0\.1:\d+, or it cannot store data now/);
    const missing = await runCli(['doctor'], { ...s3, PIR_S3_ENDPOINT: services.s3.endpoint, PIR_S3_BUCKET: 'no-such-bucket-pir-doctor' });
    assert.equal(missing.code, 1, missing.stdout);
    assert.match(missing.stdout, /fix: The S3 bucket no-such-bucket-pir-doctor .* Create the bucket/);
    const ok = await runCli(['doctor'], { ...s3, PIR_S3_ENDPOINT: services.s3.endpoint, PIR_S3_BUCKET: services.s3.bucket });
    assert.equal(ok.code, 0, ok.stdout);
    assert.match(ok.stdout, /ok +S3 bucket: bucket \S+ at .* takes a small object and gives it back, and can be listed/);
  });
});
