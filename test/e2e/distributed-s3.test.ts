/**
 * Many machines: one `pir api` and two `pir worker` processes that share no filesystem (each has
 * its own private PIR_DATA_DIR) and keep image bytes in S3 (the local SeaweedFS), on the real
 * Kafka, Redis and FerretDB. Uploads reach active and download intact; a worker SIGKILLed in the
 * middle of a stage does not stop its image, alone or under load through two apis (each image
 * active once, nothing left in the bucket); an api killed mid-upload leaves the client a retry
 * against the other api, and its abandoned multipart upload is cleaned up.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TransportError } from '../../client/index.js';
import { S3BlobStore } from '../../infra/storage/s3-blob-store.js';
import { ensureQemuImg, makeTempDir, removeDir } from '../support/images.js';
import { PirClient } from '../support/pir-client.js';
import { freePort, startPirProcess, testLogDir, waitFor, type PirProcess } from '../support/pir-process.js';
import { inCI, serviceUp, services, uniqueName, distributedS3Env } from '../support/services.js';
import { TopicRecorder } from '../support/topic-recorder.js';
import { STAGING_GRACE_MS, STAGING_SWEEP_MS } from '../../workers/sweepers.js';
import { assertActiveAsExpected, buildMatrix, makeSlowGzip, SLOW_GZIP_ENV, SLOW_GZIP_SIZE, type Fixture } from './upload-matrix.js';

const logDir = testLogDir('distributed-s3');
const TOKEN = 'e2e-distributed-s3-token-0123456789';
const MiB = 1024 * 1024;
const needed = ['redis', 'kafka', 'mongodb', 's3'] as const;
const missing = (await Promise.all(needed.map(async (name) => ({ name, ...(await serviceUp(name)) })))).filter((s) => !s.up);
const missingText = missing.map((s) => `${s.name} (${s.where})`).join(', ');
if (missing.length && !inCI) console.log(`# distributed S3 e2e skipped: not running: ${missingText}; start them with bash infra/local/services.sh start`);

describe('distributed mode on S3, no shared filesystem (pir api ×2 + pir worker ×2)', { skip: missing.length && !inCI ? `not running: ${missingText}` : false }, () => {
  let dir: string;
  let env: Record<string, string>;
  let api: PirProcess;
  const processes: PirProcess[] = [];
  const workers: PirProcess[] = [];
  let client: PirClient;
  let matrix: Fixture[];
  let store: S3BlobStore;
  const run = uniqueName('e2es3').replace(/[^A-Za-z0-9]/g, '');
  const prefix = `${run}/`;
  /** Every process gets a data directory of its own: nothing is shared but the services. */
  const privateDir = (name: string) => join(dir, `private-${name}`);

  const start = async (role: 'api' | 'worker', name: string, extra: Record<string, string> = {}) => {
    const p = await startPirProcess(role, { ...env, PIR_DATA_DIR: privateDir(name), ...extra }, logDir, name);
    processes.push(p);
    if (role === 'worker') workers.push(p);
    return p;
  };
  const keysOf = async (imageId: string) => (await store.list(`staging/${imageId}.`)).concat(await store.list(`images/${imageId}`)).map((b) => b.key).sort();

  before(async () => {
    if (missing.length) throw new Error(`CI is set but these services are not running: ${missingText}. Start them with bash infra/local/services.sh start`);
    ensureQemuImg();
    dir = await makeTempDir('pir-e2e-distributed-s3-');
    matrix = await buildMatrix(dir, 8);
    env = {
      PIR_ADMIN_TOKEN: TOKEN,
      ...distributedS3Env(run, prefix),
      // An upload whose api died is given up after 4 s without a heartbeat (the sweeper runs every 10 s).
      PIR_UPLOAD_STALL_SECONDS: '4',
      ...SLOW_GZIP_ENV,
    };
    store = new S3BlobStore({ ...services.s3, prefix });
    const port = await freePort();
    api = await start('api', 'api', { PIR_PORT: String(port) });
    await start('worker', 'worker-1');
    await start('worker', 'worker-2');
    client = new PirClient(`http://127.0.0.1:${port}`, TOKEN);
  });

  after(async () => {
    await api?.stop();
    await Promise.all(processes.map((p) => p.stop()));
    if (store) {
      for (const blob of await store.list('')) await store.delete(blob.key).catch(() => {});
      store.close();
    }
    if (dir) await removeDir(dir);
  });

  it('takes concurrent uploads (raw, qcow2, gzip qcow2) to active in S3; they download intact; no process keeps image bytes locally', async () => {
    const ids = await Promise.all(matrix.map(async (fixture) => {
      const image = await client.createImage({ name: fixture.label, disk_format: fixture.disk_format, container_format: fixture.container_format });
      const response = await client.putData(image.id, fixture.path);
      assert.equal(response.status, 204, `${fixture.label}: ${JSON.stringify(response.body)}`);
      return image.id as string;
    }));
    for (const [i, id] of ids.entries()) await assertActiveAsExpected(client, id, matrix[i]!);
    for (const worker of workers) assert.match(worker.output(), /"msg":"stage done"/, 'both workers took part');
    // Each image is one object in the bucket once its run ends (the upload itself, or the unpacked disk).
    for (const id of ids) await waitFor(async () => (await keysOf(id)).length === 1, 10_000, `one object left for ${id}`);
    for (const name of ['api', 'worker-1', 'worker-2']) {
      for (const sub of ['images', 'staging']) assert.equal(existsSync(join(privateDir(name), sub)), false, `${name} has no local ${sub} directory`);
    }
  });

  it('the ops page shows every process, though none shares a data directory with another (heartbeats in Redis)', async () => {
    const res = await fetch(`${client.baseUrl}/ops/api/stream`, { headers: { 'x-auth-token': TOKEN } });
    assert.equal(res.status, 200);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    while (!text.includes('\n\n')) text += (await reader.read()).value ?? '';
    await reader.cancel();
    const snapshot = JSON.parse(text.split('\n')[1]!.slice('data: '.length)) as { processes: { role: string; pid: number }[] };
    const pids = new Set(processes.map((p) => p.child.pid));
    assert.deepEqual(snapshot.processes.map((p) => p.role).sort(), ['api', 'worker', 'worker']);
    for (const p of snapshot.processes) assert.ok(pids.has(p.pid), `pid ${p.pid} is one of this test's processes`);
  });

  it('a process whose webhook secret key is not the others\' (generated into its private data directory) stops at start, in one line', async () => {
    const { PIR_WEBHOOK_SECRET_KEY: _shared, ...withoutKey } = env;
    await assert.rejects(
      startPirProcess('worker', { ...withoutKey, PIR_DATA_DIR: privateDir('worker-own-key') }, logDir, 'worker-own-key'),
      (error: Error) => /exited before starting/.test(error.message)
        && /pir worker: the webhook secret key of this process \(.*webhook-secret-key\) is not the one the other PIR processes on this database seal webhook secrets with/.test(error.message),
    );
  });

  it('metadata definitions written through one api are read and changed through another (their MongoDB-wire store is shared)', async () => {
    const port = await freePort();
    const second = await startPirProcess('api', { ...env, PIR_DATA_DIR: privateDir('api-metadefs'), PIR_PORT: String(port) }, logDir, 'api-metadefs');
    try {
      const call = async (base: string, method: string, path: string, body?: unknown) => {
        const res = await fetch(`${base}${path}`, { method, headers: { 'x-auth-token': TOKEN, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}) });
        return { status: res.status, body: res.status === 204 ? null : await res.json() };
      };
      const one = client.baseUrl;
      const two = `http://127.0.0.1:${port}`;
      const ns = `PIR::${run}`;
      const nsPath = `/v2/metadefs/namespaces/${encodeURIComponent(ns)}`;
      assert.equal((await call(one, 'POST', '/v2/metadefs/namespaces', { namespace: ns, visibility: 'public', properties: { p: { title: 'P', type: 'string' } } })).status, 201);
      assert.deepEqual(Object.keys((await call(two, 'GET', nsPath)).body.properties), ['p']);
      assert.equal((await call(one, 'POST', '/v2/metadefs/namespaces', { namespace: ns })).status, 409, 'the name is taken for every api');
      // Concurrent tags through both apis: each is kept (compare-and-set on the shared store).
      const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => call(i % 2 ? one : two, 'POST', `${nsPath}/tags/t${i}`)));
      assert.deepEqual(answers.map((a) => a.status), Array(8).fill(201));
      assert.equal((await call(one, 'GET', `${nsPath}/tags`)).body.tags.length, 8);
      assert.equal((await call(two, 'PUT', nsPath, { namespace: `${ns}2`, visibility: 'public' })).status, 200);
      assert.equal((await call(one, 'GET', nsPath)).status, 404, 'renamed for the other api too');
      assert.equal((await call(one, 'DELETE', `/v2/metadefs/namespaces/${encodeURIComponent(`${ns}2`)}`)).status, 204);
      assert.equal((await call(two, 'GET', `/v2/metadefs/namespaces/${encodeURIComponent(`${ns}2`)}`)).status, 404);
    } finally {
      await second.stop();
    }
  });

  it('finishes an image after the worker running its stage is killed with SIGKILL', async () => {
    const gz = makeSlowGzip(dir);
    const image = await client.createImage({ name: 'victim', disk_format: 'raw', container_format: 'compressed' });
    assert.equal((await client.putData(image.id, gz, 'file', { prefer: 'respond-async' })).status, 202);
    const runsUnpack = (line: string) => line.includes(image.id) && line.includes('"stage":"unpack"') && line.includes('"msg":"stage started"');
    const holder = () => workers.find((w) => w.child.exitCode === null && w.child.signalCode === null && w.output().split('\n').some(runsUnpack));
    await waitFor(() => holder() !== undefined, 30_000, 'a worker running the unpack stage');
    const victim = holder()!;
    await new Promise((r) => setTimeout(r, 500)); // inside the stage: writing 1 GiB to S3 takes seconds
    await victim.kill();
    await start('worker', 'worker-3');
    const settled = await client.waitSettled(image.id, 240_000);
    assert.equal(settled.status, 'active', JSON.stringify(settled.pir_failure));
    assert.equal(settled.size, SLOW_GZIP_SIZE);
    assert.ok(settled.pir_pipeline.stages.unpack.attempts >= 2, 'the unpack stage ran again');
    const downloaded = await client.downloadDigests(image.id);
    assert.equal(downloaded.size, SLOW_GZIP_SIZE);
    assert.equal(downloaded.md5, settled.checksum);
    // The killed attempt's multipart upload and the upload itself are gone: one object, the image.
    await waitFor(async () => (await keysOf(image.id)).length === 1, 20_000, 'one object left for the image');
    // The disk the winning attempt wrote, under its own key (each attempt writes its own).
    const left = await keysOf(image.id);
    assert.equal(left.length, 1);
    assert.match(left[0]!, new RegExp(`^staging/${image.id}\\.${settled.pir_pipeline.run}\\.unpacked-[0-9a-f]{12}$`));
    // Free the bucket for the rest of the run.
    assert.equal((await client.call('DELETE', `/v2/images/${image.id}`)).status, 204);
    await waitFor(async () => (await keysOf(image.id)).length === 0, 10_000, 'the deleted image has no objects');
  });

  it('under load: a worker SIGKILLed mid-job while 48 uploads run through two apis; every image ends active once, with its digests, leaving one object', async (t) => {
    const port = await freePort();
    await start('api', 'api-2', { PIR_PORT: String(port) });
    const clients = [client, new PirClient(`http://127.0.0.1:${port}`, TOKEN)];
    const recorder = new TopicRecorder(env.PIR_KAFKA_TOPIC!);
    await recorder.start();
    try {
      // First an image whose unpack takes seconds, so that the kill surely lands inside a job.
      const slow = await clients[1]!.createImage({ name: 'slow', disk_format: 'raw', container_format: 'compressed' });
      assert.equal((await clients[1]!.putData(slow.id, makeSlowGzip(dir), 'file', { prefer: 'respond-async' })).status, 202);
      // Then the load: the matrix six times over, spread across both apis, all at once.
      const load = Array.from({ length: 6 }, () => matrix).flat();
      const created = new Set<string>();
      const uploads = Promise.all(load.map(async (fixture, i) => {
        const via = clients[i % 2]!;
        const image = await via.createImage({ name: `load ${i} ${fixture.label}`, disk_format: fixture.disk_format, container_format: fixture.container_format });
        created.add(image.id);
        const response = await via.putData(image.id, fixture.path, 'file', { prefer: 'respond-async' });
        assert.equal(response.status, 202, `${fixture.label}: ${JSON.stringify(response.body)}`);
        return image.id as string;
      }));

      const runsSlowUnpack = (line: string) => line.includes(slow.id) && line.includes('"stage":"unpack"') && line.includes('"msg":"stage started"');
      const holder = () => workers.find((w) => w.child.exitCode === null && w.child.signalCode === null && w.output().split('\n').some(runsSlowUnpack));
      await waitFor(() => holder() !== undefined, 30_000, 'a worker running the slow unpack');
      // Kill once part of the load is through (the rest still in the pipeline), or after 3 s.
      const loadActive = () => recorder.events.filter((e) => e.type === 'image.active' && created.has(e.image_id)).length;
      await waitFor(() => loadActive() >= 6, 3_000, 'part of the load active').catch(() => {});
      const victim = holder()!;
      const activeAtKill = new Set(recorder.events.filter((e) => e.type === 'image.active').map((e) => e.image_id));
      await victim.kill();
      await start('worker', 'worker-4');

      const ids = await uploads;
      const inFlight = ids.filter((id) => !activeAtKill.has(id)).length;
      const begunByVictim = ids.filter((id) => victim.output().includes(`"image_id":"${id}"`)).length;
      t.diagnostic(`at the kill: ${ids.length - inFlight} of ${ids.length} load images active; the killed worker had begun work on ${begunByVictim}`);
      assert.ok(inFlight > 0, 'the worker died while the load was still in the pipeline');
      const settled = (id: string) => recorder.idsOf(id, 'image.active').size > 0 || recorder.idsOf(id, 'image.killed').size > 0;
      await waitFor(() => [slow.id, ...ids].every(settled), 240_000, 'every image settled (image.active or image.killed on the topic)');

      for (const [i, id] of ids.entries()) await assertActiveAsExpected(clients[(i + 1) % 2]!, id, load[i]!);
      const slowImage = (await client.getImage(slow.id)).body;
      assert.equal(slowImage.status, 'active', JSON.stringify(slowImage.pir_failure));
      assert.equal(slowImage.size, SLOW_GZIP_SIZE);
      assert.ok(slowImage.pir_pipeline.stages.unpack.attempts >= 2, 'the killed unpack ran again');

      // Nothing lost, nothing twice, nothing left behind: one image.active event and one object per image.
      await new Promise((r) => setTimeout(r, 2000)); // room for a duplicate event to show up, if there were one
      // A kill that lands between an image's active write and the removal of its uploaded
      // artifact (a compressed upload is stored apart from its unpacked disk) leaves the artifact
      // to the staging janitor: removed once STAGING_GRACE_MS old, at its next pass.
      const janitorMs = STAGING_GRACE_MS + 2 * STAGING_SWEEP_MS + 10_000;
      for (const id of [slow.id, ...ids]) {
        assert.equal(recorder.idsOf(id, 'image.active').size, 1, `one image.active event for ${id}`);
        assert.equal(recorder.idsOf(id, 'image.killed').size, 0, `no image.killed event for ${id}`);
        await waitFor(async () => (await keysOf(id)).length === 1, janitorMs, `one object left for ${id}`);
      }
      // Free the bucket for the rest of the run.
      for (const id of [slow.id, ...ids]) assert.equal((await client.call('DELETE', `/v2/images/${id}`)).status, 204);
    } finally {
      await recorder.stop();
    }
  });

  it('an api killed mid-upload: the client retries against the other api and succeeds; the abandoned multipart upload is removed', async () => {
    const port = await freePort();
    const doomed = await start('api', 'api-doomed', { PIR_PORT: String(port) });
    const bytes = randomBytes(48 * MiB);
    const file = join(dir, 'retry.raw');
    execFileSync('bash', ['-c', `cat > '${file}'`], { input: bytes });
    const image = await client.createImage({ name: 'retried', disk_format: 'raw', container_format: 'bare' });

    // Send 40 MiB to the doomed api (the first 16 MiB part starts the multipart upload), then hold.
    const req = request({ host: '127.0.0.1', port, method: 'PUT', path: `/v2/images/${image.id}/file`, headers: { 'x-auth-token': TOKEN, 'content-type': 'application/octet-stream', 'content-length': String(bytes.length) } });
    req.on('error', () => {}); // the api dies under it
    req.on('response', (res) => res.resume());
    for (let sent = 0; sent < 40 * MiB; sent += MiB) {
      if (!req.write(bytes.subarray(sent, sent + MiB))) await new Promise((r) => req.once('drain', r));
    }
    await waitFor(async () => (await store.list(`staging/${image.id}.`)).length > 0, 30_000, 'the multipart upload to begin');
    await doomed.kill();
    req.destroy();
    assert.equal((await client.getImage(image.id)).body.status, 'saving', 'the dead api left the image saving');

    // The client's retry against the other api: 409 while the image still looks busy, then 204.
    let status = 0;
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      // A 409 sent before the body was read may reach the client as a broken pipe instead (0).
      status = await client.putData(image.id, file).then((r) => r.status, (error: Error) => {
        if (error instanceof TransportError) return 0;
        throw error;
      });
      if (status === 204) break;
      assert.ok(status === 409 || status === 0, `only "busy" before the sweeper gives the upload up (got ${status})`);
      await new Promise((r) => setTimeout(r, 1000));
    }
    assert.equal(status, 204, 'the retry succeeded');
    const settled = await client.waitSettled(image.id, 60_000);
    assert.equal(settled.status, 'active', JSON.stringify(settled.pir_failure));
    assert.equal(settled.checksum, createHash('md5').update(bytes).digest('hex'));
    const downloaded = await client.downloadDigests(image.id);
    assert.equal(downloaded.sha512, createHash('sha512').update(bytes).digest('hex'));
    // Nothing of the abandoned attempt is left: one object, the retried upload (raw is stored as uploaded).
    await waitFor(async () => (await keysOf(image.id)).length === 1, 20_000, 'the abandoned upload removed');
    assert.deepEqual(await keysOf(image.id), [`staging/${image.id}.${settled.pir_pipeline.run}.upload`]);
    assert.equal(readFileSync(file).length, bytes.length);
  });
});

describe('embedded mode on S3 (pir serve with PIR_S3_ENDPOINT)', { skip: missing.length && !inCI ? `not running: ${missingText}` : false }, () => {
  it('starts with a fresh data directory, stores the image in the bucket and serves it back', async () => {
    if (missing.length) throw new Error(`CI is set but these services are not running: ${missingText}`);
    const dir = await makeTempDir('pir-e2e-embedded-s3-');
    const prefix = `${uniqueName('e2es3embedded')}/`;
    const store = new S3BlobStore({ ...services.s3, prefix });
    const port = await freePort();
    const serve = await startPirProcess('serve', {
      PIR_DATA_DIR: join(dir, 'not-yet-created'), PIR_ADMIN_TOKEN: TOKEN, PIR_PORT: String(port),
      PIR_S3_ENDPOINT: services.s3.endpoint, PIR_S3_BUCKET: services.s3.bucket, PIR_S3_ACCESS_KEY_ID: services.s3.accessKeyId,
      PIR_S3_SECRET_ACCESS_KEY: services.s3.secretAccessKey, PIR_S3_PREFIX: prefix,
    }, logDir, 'serve-s3');
    try {
      const client = new PirClient(`http://127.0.0.1:${port}`, TOKEN);
      const bytes = randomBytes(3 * MiB);
      const file = join(dir, 'small.raw');
      execFileSync('bash', ['-c', `cat > '${file}'`], { input: bytes });
      const image = await client.createImage({ name: 'embedded-s3', disk_format: 'raw', container_format: 'bare' });
      assert.equal((await client.putData(image.id, file)).status, 204);
      const downloaded = await client.downloadDigests(image.id);
      assert.equal(downloaded.sha512, createHash('sha512').update(bytes).digest('hex'));
      assert.deepEqual((await store.list(`staging/${image.id}.`)).map((b) => b.key), [`staging/${image.id}.1.upload`]);
      assert.equal(existsSync(join(dir, 'not-yet-created', 'images')), false, 'no local image directory');
    } finally {
      await serve.stop();
      for (const blob of await store.list('')) await store.delete(blob.key).catch(() => {});
      store.close();
      await removeDir(dir);
    }
  });
});
