/**
 * Distributed mode end to end, on the real services (Kafka, Redis, FerretDB as the MongoDB-wire
 * server): one `pir api` and two `pir worker` processes sharing a data directory.
 */
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ensureQemuImg, makeImage, makeTempDir, removeDir } from '../support/images.js';
import { PirClient } from '../support/pir-client.js';
import { freePort, startPirProcess, testLogDir, waitFor, type PirProcess } from '../support/pir-process.js';

const logDir = testLogDir('distributed');
import { inCI, serviceUp, services, uniqueName } from '../support/services.js';
import { TopicRecorder } from '../support/topic-recorder.js';
import { assertActiveAsExpected, buildMatrix, makeSlowGzip, SLOW_GZIP_ENV, SLOW_GZIP_SIZE, waitForEmptyStaging, type Fixture } from './upload-matrix.js';

const TOKEN = 'e2e-distributed-token-0123456789abc';
const needed = ['redis', 'kafka', 'mongodb'] as const;
const missing = (await Promise.all(needed.map(async (name) => ({ name, ...(await serviceUp(name)) })))).filter((s) => !s.up);
const missingText = missing.map((s) => `${s.name} (${s.where})`).join(', ');
if (missing.length && !inCI) console.log(`# distributed e2e skipped: not running: ${missingText}; start them with bash infra/local/services.sh start`);

describe('distributed mode (pir api + 2 × pir worker on Kafka, Redis, FerretDB)', { skip: missing.length && !inCI ? `not running: ${missingText}` : false }, () => {
  let dir: string;
  let env: Record<string, string>;
  let api: PirProcess;
  const workers: PirProcess[] = [];
  let client: PirClient;
  let matrix: Fixture[];
  let recorder: TopicRecorder;
  const run = uniqueName('e2e').replace(/[^A-Za-z0-9]/g, '');

  const startWorker = async (name: string) => {
    const worker = await startPirProcess('worker', env, logDir, name);
    workers.push(worker);
    return worker;
  };

  before(async () => {
    if (missing.length) throw new Error(`CI is set but these services are not running: ${missingText}. Start them with bash infra/local/services.sh start`);
    ensureQemuImg();
    dir = await makeTempDir('pir-e2e-distributed-');
    matrix = await buildMatrix(dir, 20);
    const port = await freePort();
    const mongo = new URL(services.mongodbUrl);
    mongo.pathname = `/${run}`;
    env = {
      PIR_DATA_DIR: join(dir, 'data'),
      PIR_ADMIN_TOKEN: TOKEN,
      PIR_KAFKA_BROKERS: services.kafkaBrokers.join(','),
      PIR_REDIS_URL: services.redisUrl,
      PIR_MONGODB_URL: mongo.toString(),
      PIR_KAFKA_TOPIC: `pir.${run}`,
      PIR_REDIS_PREFIX: run,
      ...SLOW_GZIP_ENV,
    };
    api = await startPirProcess('api', { ...env, PIR_PORT: String(port) }, logDir, 'api');
    await startWorker('worker-1');
    await startWorker('worker-2');
    client = new PirClient(`http://127.0.0.1:${port}`, TOKEN);
    recorder = new TopicRecorder(`pir.${run}`);
    await recorder.start();
  });

  after(async () => {
    await recorder?.stop();
    // The api first: its waiting uploads finish while the workers still run.
    await api?.stop();
    await Promise.all(workers.map((p) => p.stop()));
    if (dir) await removeDir(dir);
  });

  it('takes 20 concurrent uploads (raw, qcow2, gzip qcow2) to active with the right checksums and virtual sizes', async () => {
    const ids = await Promise.all(matrix.map(async (fixture) => {
      const image = await client.createImage({ name: fixture.label, disk_format: fixture.disk_format, container_format: fixture.container_format });
      const response = await client.putData(image.id, fixture.path);
      assert.equal(response.status, 204, `${fixture.label}: ${JSON.stringify(response.body)}`);
      return image.id as string;
    }));
    for (const [i, id] of ids.entries()) await assertActiveAsExpected(client, id, matrix[i]);
    // Both workers took part.
    for (const worker of workers) assert.match(worker.output(), /"msg":"stage done"/);
    await waitForEmptyStaging(join(dir, 'data'));
  });

  it("answers a refused upload with 415 naming the stage, code and reason (the worker's image.killed event answers it)", async () => {
    const backing = await makeImage(dir, 'qcow2', { name: 'refused-backing.qcow2', size: '16M', backing: '/etc/passwd', backingFormat: 'raw', unsafe: true });
    const image = await client.createImage({ name: 'refused', disk_format: 'qcow2', container_format: 'bare' });
    const response = await client.putData(image.id, backing);
    assert.equal(response.status, 415, JSON.stringify(response.body));
    const error = response.body.error;
    assert.equal(error.error_code, 'qcow2_backing_file');
    assert.match(error.message, /refused at the inspect stage: .*backing file.*\/etc\/passwd/);
    const { body: after } = await client.getImage(image.id);
    assert.equal(after.status, 'killed');
    assert.deepEqual({ stage: after.pir_failure.stage, code: after.pir_failure.code }, { stage: 'inspect', code: 'qcow2_backing_file' });
  });

  it('finishes an image exactly once after the worker running its stage is killed with SIGKILL', async () => {
    const gz = makeSlowGzip(dir);
    const image = await client.createImage({ name: 'victim', disk_format: 'raw', container_format: 'compressed' });
    assert.equal((await client.putData(image.id, gz, 'file', { prefer: 'respond-async' })).status, 202);
    const runsUnpack = (line: string) => line.includes(image.id) && line.includes('"stage":"unpack"') && line.includes('"msg":"stage started"');
    const holder = () => workers.find((w) => w.child.exitCode === null && w.output().split('\n').some(runsUnpack));
    await waitFor(() => holder() !== undefined, 30_000, 'a worker running the unpack stage');
    const victim = holder()!;
    await new Promise((r) => setTimeout(r, 300)); // well inside the stage: it takes seconds
    await victim.kill();
    await startWorker('worker-3');
    const settled = await client.waitSettled(image.id, 180_000);
    assert.equal(settled.status, 'active', JSON.stringify(settled.pir_failure));
    assert.equal(settled.size, SLOW_GZIP_SIZE);
    assert.ok(settled.pir_pipeline.stages.unpack.attempts >= 2, 'the unpack stage ran again');
    const stored = await readdir(join(dir, 'data', 'images'));
    assert.equal(stored.filter((n) => n.startsWith(image.id)).length, 1, `one stored file, no partial or duplicate: ${stored.join(', ')}`);
    await waitForEmptyStaging(join(dir, 'data'), image.id);
    // The effect happened once: one image.active event (by id) on the topic, however often it was delivered.
    await waitFor(() => recorder.idsOf(image.id, 'image.active').size > 0, 30_000, 'image.active on the topic');
    await new Promise((r) => setTimeout(r, 3000)); // room for a duplicate to show up, if there were one
    const activeEvents = recorder.idsOf(image.id, 'image.active');
    assert.equal(activeEvents.size, 1, `image.active events: ${[...activeEvents].join(', ')}`);
  });

  it('delivers the event and reaches active when the api dies between the manifest write and the Kafka publish', async () => {
    const port = await freePort();
    const doomed = await startPirProcess('api', { ...env, PIR_PORT: String(port), PIR_TEST_FAULTS: 'exit-after-manifest-write:image.import.started' }, logDir, 'api-doomed');
    const doomedClient = new PirClient(`http://127.0.0.1:${port}`, TOKEN);
    const fixture = matrix[1];
    const image = await doomedClient.createImage({ name: 'outbox', disk_format: fixture.disk_format, container_format: fixture.container_format });
    await doomedClient.putData(image.id, fixture.path).then(
      (r) => assert.fail(`the api should have died, but answered ${r.status}`),
      () => {},
    );
    await waitFor(() => doomed.child.exitCode !== null || doomed.child.signalCode !== null, 10_000, 'the api to die');
    assert.match(doomed.output(), /PIR_TEST_FAULTS: exiting after the manifest write/);
    // The manifest says importing; nobody published the event. The workers' outbox sweeper must.
    const settled = await client.waitSettled(image.id, 60_000);
    assert.equal(settled.status, 'active', JSON.stringify(settled.pir_failure));
    await assertActiveAsExpected(client, image.id, fixture);
  });
});
