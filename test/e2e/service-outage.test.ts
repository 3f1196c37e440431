/**
 * The MongoDB-wire server goes away for seconds while clients upload (a restart, a failover, a
 * network cut), on the real services: a `pir api` and a `pir worker` reach FerretDB through a TCP
 * forwarder the test cuts (every open connection dropped, new ones reset) and opens again.
 * Requests that needed it answer 503 with Retry-After, never 500; once it is back, no image is
 * left held by an upload that will never run, and the clients' retries take every image to active.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeTempDir, removeDir } from '../support/images.js';
import { PirClient } from '../support/pir-client.js';
import { freePort, startPirProcess, testLogDir, type PirProcess } from '../support/pir-process.js';
import { dropMongoDatabase, inCI, serviceUp, services, uniqueName } from '../support/services.js';
import { tcpForwarder, type TcpForwarder } from '../support/tcp-forwarder.js';

const logDir = testLogDir('service-outage');
const TOKEN = 'e2e-service-outage-token-0123456789ab';
const needed = ['redis', 'kafka', 'mongodb'] as const;
const missing = (await Promise.all(needed.map(async (name) => ({ name, ...(await serviceUp(name)) })))).filter((s) => !s.up);
const missingText = missing.map((s) => `${s.name} (${s.where})`).join(', ');
const CLIENTS = 4;
const OUTAGE_MS = 8000;
/** How soon after the server is back uploads must succeed again: a request waiting on it then (up to the driver's 5 s server selection) and the pipeline's retry backoffs, with room for a slow host. */
const RECOVERY_LIMIT_MS = 15_000;

interface Attempt { id: string | null; status: number; retryAfter: string | null; code: string | null; startMs: number; endMs: number }

describe('a MongoDB-wire server outage under load', { skip: missing.length && !inCI ? `not running: ${missingText}` : false }, () => {
  let dir: string;
  const processes: PirProcess[] = [];
  const run = uniqueName('outage').replace(/[^A-Za-z0-9]/g, '');
  let forwarder: TcpForwarder | null = null;

  before(async () => {
    if (missing.length) throw new Error(`CI is set but these services are not running: ${missingText}. Start them with bash infra/local/services.sh start`);
    dir = await makeTempDir('pir-e2e-outage-');
  });

  after(async () => {
    for (const p of processes.reverse()) await p.stop();
    await forwarder?.close();
    await dropMongoDatabase(run).catch(() => {});
    if (dir) await removeDir(dir);
  });

  it('answers 503 with Retry-After while it is gone, and leaves nothing stuck once it is back', async (t) => {
    const mongoTarget = new URL(services.mongodbUrl); // the real FerretDB, reached through a forwarder the test cuts
    const target = { host: mongoTarget.hostname, port: Number(mongoTarget.port) };
    forwarder = await tcpForwarder(target, { open: true });
    const mongoPort = forwarder.port;
    const apiPort = await freePort();
    const env = {
      PIR_DATA_DIR: join(dir, 'data'),
      PIR_ADMIN_TOKEN: TOKEN,
      PIR_KAFKA_BROKERS: services.kafkaBrokers.join(','),
      PIR_REDIS_URL: services.redisUrl,
      PIR_MONGODB_URL: `mongodb://127.0.0.1:${mongoPort}/${run}`,
      PIR_KAFKA_TOPIC: `pir.${run}`,
      PIR_REDIS_PREFIX: run,
    };
    processes.push(await startPirProcess('api', { ...env, PIR_PORT: String(apiPort) }, logDir, 'api'));
    processes.push(await startPirProcess('worker', env, logDir, 'worker'));
    const client = new PirClient(`http://127.0.0.1:${apiPort}`, TOKEN);
    const file = join(dir, 'one.raw');
    await writeFile(file, randomBytes(1024 * 1024));

    const attempts: Attempt[] = [];
    let stop = false;
    const call = async (method: string, path: string, body?: unknown) => {
      const response = await fetch(`http://127.0.0.1:${apiPort}${path}`, {
        method, headers: { 'x-auth-token': TOKEN, 'content-type': 'application/json' }, ...(body ? { body: JSON.stringify(body) } : {}),
      });
      const text = await response.text();
      return { status: response.status, retryAfter: response.headers.get('retry-after'), json: text ? JSON.parse(text) : null };
    };
    const startedAt = Date.now();
    const now = () => Date.now() - startedAt;
    const uploader = async () => {
      while (!stop) {
        const startMs = now();
        const created = await call('POST', '/v2/images', { name: 'outage', disk_format: 'raw', container_format: 'bare' });
        if (created.status !== 201) {
          attempts.push({ id: null, status: created.status, retryAfter: created.retryAfter, code: created.json?.error?.error_code ?? null, startMs, endMs: now() });
          await new Promise((resolve) => setTimeout(resolve, 200));
          continue;
        }
        const put = await client.putData(created.json.id, file);
        attempts.push({ id: created.json.id, status: put.status, retryAfter: put.headers['retry-after'] ?? null, code: put.status === 204 ? null : (put.body as { error?: { error_code?: string } })?.error?.error_code ?? null, startMs, endMs: now() });
      }
    };
    const clients = Array.from({ length: CLIENTS }, uploader);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    forwarder.cut();
    const cutAt = attempts.length;
    const cutMs = now();
    await new Promise((resolve) => setTimeout(resolve, OUTAGE_MS));
    forwarder.open();
    const openMs = now();
    // The clients go on until uploads succeed again (the recovery this test is about), and for at
    // least 3 s; a service that has not recovered RECOVERY_LIMIT_MS after the outage fails below.
    const recovered = () => attempts.some((a) => a.endMs > openMs && a.status === 204);
    while (now() - openMs < 3000 || (!recovered() && now() - openMs < RECOVERY_LIMIT_MS)) await new Promise((resolve) => setTimeout(resolve, 100));
    stop = true;
    await Promise.all(clients);

    const failed = attempts.filter((a) => a.status !== 201 && a.status !== 204);
    // On failure, the timeline says where the clients were held (ms from the first request).
    const timeline = () => `cut at ${cutMs}, open at ${openMs}: ${attempts.map((a) => `${a.startMs}-${a.endMs} ${a.status}${a.code ? ` ${a.code}` : ''}`).join(', ')}`;
    const firstSuccess = attempts.filter((a) => a.endMs > openMs && a.status === 204).sort((a, b) => a.endMs - b.endMs)[0];
    assert.ok(firstSuccess, `uploads went on after the outage; ${timeline()}`);
    t.diagnostic(`first upload done ${firstSuccess.endMs - openMs} ms after the server was back`);
    assert.ok(failed.length > 0, 'the outage was felt');
    for (const a of failed) {
      assert.equal(a.status, 503, `${a.id ?? 'create'}: ${a.status} ${a.code}; ${timeline()}`);
      assert.equal(a.code, 'dependency_unavailable');
      assert.equal(a.retryAfter, '5');
    }

    // Every image settles: active, or back in queued (an upload that never ran), within 15 s;
    // none is left saving or importing for the stale sweep's 120 s.
    const ids = attempts.flatMap((a) => (a.id ? [a.id] : []));
    const deadline = Date.now() + 15_000;
    const statuses = new Map<string, string>();
    for (const id of ids) {
      for (;;) {
        const status = (await client.getImage(id)).body.status as string;
        if (status === 'active' || status === 'queued') {
          statuses.set(id, status);
          break;
        }
        assert.ok(Date.now() < deadline, `image ${id} still ${status} 15 s after the outage`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    // The clients retry what was answered 503 and is queued: each goes to active.
    for (const [id, status] of statuses) {
      if (status !== 'queued') continue;
      const retry = await client.putData(id, file);
      assert.equal(retry.status, 204, `retry of ${id}: ${JSON.stringify(retry.body)}`);
    }
    for (const id of ids) assert.equal((await client.getImage(id)).body.status, 'active', id);
    for (const p of processes) assert.equal(p.child.exitCode, null, `pir ${p.role} is still running`);
  });

  /** An api whose MongoDB-wire server is reached through a forwarder the test can stall. */
  async function apiBehindSilentMongo(name: string, env: Record<string, string> = {}) {
    const mongoTarget = new URL(services.mongodbUrl);
    const silent = await tcpForwarder({ host: mongoTarget.hostname, port: Number(mongoTarget.port) }, { open: true });
    const db = `${run}${name}`;
    const apiPort = await freePort();
    const api = await startPirProcess('api', {
      PIR_DATA_DIR: join(dir, name),
      PIR_ADMIN_TOKEN: TOKEN,
      PIR_KAFKA_BROKERS: services.kafkaBrokers.join(','),
      PIR_REDIS_URL: services.redisUrl,
      PIR_MONGODB_URL: `mongodb://127.0.0.1:${silent.port}/${db}`,
      PIR_KAFKA_TOPIC: `pir.${db}`,
      PIR_REDIS_PREFIX: db,
      PIR_PORT: String(apiPort),
      ...env,
    }, logDir, `${name}-api`);
    const client = new PirClient(`http://127.0.0.1:${apiPort}`, TOKEN);
    await client.createImage({ name: 'before', disk_format: 'raw', container_format: 'bare' });
    const list = () => fetch(`http://127.0.0.1:${apiPort}/v2/images?limit=5`, { headers: { 'x-auth-token': TOKEN } });
    const cleanUp = async () => {
      await api.kill();
      await silent.close();
      await dropMongoDatabase(db).catch(() => {});
    };
    return { api, silent, list, cleanUp };
  }

  it('a request waiting on a MongoDB that went silent answers 503 within ~17 s, not never', async () => {
    // A network that drops packets without a reset: the driver has no socket timeout; its
    // monitor's check times out after connectTimeoutMS (10 s, PIR's default) and then closes the
    // connections in use (infra/mongo/command-metrics.ts). With the driver's 30 s it took ~36 s.
    const { silent, list, cleanUp } = await apiBehindSilentMongo('silentwait');
    try {
      silent.stall();
      const t0 = Date.now();
      const res = await list();
      const took = Date.now() - t0;
      assert.equal(res.status, 503, await res.text());
      assert.equal(res.headers.get('retry-after'), '5');
      assert.ok(took < 25_000, `answered ${took} ms after the server went silent`);
    } finally {
      await cleanUp();
    }
  });

  it('a process stopping while its requests wait on a MongoDB that went silent exits after PIR_SHUTDOWN_TIMEOUT_SECONDS', async () => {
    // A request waits on the silent server; SIGTERM must still end the process.
    const { api, silent, list, cleanUp } = await apiBehindSilentMongo('silentstop', { PIR_SHUTDOWN_TIMEOUT_SECONDS: '3' });
    try {
      silent.stall();
      const stuck = list().then((r) => r.status, () => 'cut off');
      await new Promise((resolve) => setTimeout(resolve, 500));
      const t0 = Date.now();
      const code = await api.stop();
      const took = Date.now() - t0;
      assert.equal(code, 1, 'exit status 1: stopping did not finish');
      assert.ok(took >= 2500 && took < 15_000, `exited ${took} ms after SIGTERM`);
      assert.match(api.output(), /"msg":"stopping did not finish in time; exiting anyway"/);
      await stuck;
    } finally {
      await cleanUp();
    }
  });
});
