/**
 * Registering bytes that already exist (README "Registering existing bytes"), end to end: a real
 * `pir serve` storing its own images in SeaweedFS, registering objects from a second SeaweedFS
 * bucket (s3://) and from a local HTTP server allow-listed with PIR_EGRESS_ALLOWLIST (the
 * read-only HTTP store), by POST /v2/images/{id}/locations and by the glance CLI's
 * `location-add` (PATCH add /locations/-). Hostile cases: a redirect to a private address, an
 * object changed after registration, huge and too-small objects, non-image and compressed bytes,
 * a server without ranges, validation_data that differs, PIR's own bucket (another tenant's
 * image bytes), and the cross-tenant matrix of who may add and who may see a location.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { CreateBucketCommand, DeleteBucketCommand, DeleteObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { convertImage, ensureQemuImg, makeTempDir, qemuInfo, removeDir } from '../support/images.js';
import { PirClient } from '../support/pir-client.js';
import { runCli } from '../support/pir-cli.js';
import { freePort, startPirProcess, testLogDir, type PirProcess } from '../support/pir-process.js';
import { startRangeServer, type RangeServer } from '../support/range-server.js';
import { inCI, serviceUp, services, uniqueName } from '../support/services.js';

const run = promisify(execFile);
const haveGlance = await run('glance', ['--version']).then(() => true, () => false);
const s3Up = (await serviceUp('s3')).up;
if (!s3Up && inCI) throw new Error('SeaweedFS (s3) is not running and CI is set: bash infra/local/services.sh start s3');

const logDir = testLogDir('register-location');
const ADMIN = 'e2e-register-admin-token-0123456789ab';
const ALICE = 'e2e-register-alice-token-0123456789ab'; // member of project-a
const BOB = 'e2e-register-bob-token-0123456789abcde'; // member of project-b
const NOVA = 'e2e-register-nova-token-0123456789abcd'; // service user in project-a
const READER = 'e2e-register-reader-token-0123456789ab'; // reader of project-a
const SIGNATURE = 'sig-e2e-secret-query-0123456789';

const distributedUp = (await Promise.all((['redis', 'kafka', 'mongodb'] as const).map((n) => serviceUp(n)))).every((r) => r.up);
if (!distributedUp && inCI) throw new Error('Redis, Kafka or the MongoDB-wire server is not running and CI is set: bash infra/local/services.sh start');

for (const mode of ['embedded', 'distributed'] as const) {
  const skip = !s3Up ? 'SeaweedFS not running: bash infra/local/services.sh start s3'
    : mode === 'distributed' && !distributedUp ? 'Redis, Kafka or FerretDB not running: bash infra/local/services.sh start' : false;
  // Distributed mode runs the main paths (its manifest writes cost seconds on FerretDB); embedded runs every case.
  const full = mode === 'embedded';
describe(`registering existing bytes (${mode === 'embedded' ? 'pir serve' : 'pir api + pir worker'} on SeaweedFS; s3:// and http(s) locations)`, { skip }, () => {
  let dir: string;
  const procs: PirProcess[] = [];
  const output = () => procs.map((p) => p.output()).join('\n');
  let http: RangeServer;
  let s3: S3Client;
  let as: Record<'admin' | 'alice' | 'bob' | 'nova' | 'reader', PirClient>;
  let port: number;
  const bucket = uniqueName('pirreg').toLowerCase().replace(/[^a-z0-9-]/g, '').slice(0, 60);
  const prefix = `${uniqueName('reg').replace(/[^A-Za-z0-9]/g, '')}/`;
  const keys: string[] = [];
  let qcow2: Buffer;
  /** How the processes were started: a test that kills one starts its replacement the same way. */
  let restart: () => Promise<void>;
  let qcow2Virtual: number;
  let digests: { md5: string; sha512: string };

  const put = async (key: string, body: Buffer) => {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    if (!keys.includes(key)) keys.push(key);
  };

  before(async () => {
    ensureQemuImg();
    dir = await makeTempDir('pir-e2e-register-');
    // 8 MiB of data in a 64 MiB disk: large enough that inspection's bounded reads show beside the one whole read.
    const rawPath = join(dir, 'data.raw');
    await writeFile(rawPath, Buffer.concat([randomBytes(8 * 2 ** 20), Buffer.alloc(56 * 2 ** 20)]));
    const qcow2Path = await convertImage(rawPath, join(dir, 'disk.qcow2'), 'qcow2');
    qcow2 = await readFile(qcow2Path);
    qcow2Virtual = (await qemuInfo(qcow2Path))['virtual-size'];
    digests = { md5: createHash('md5').update(qcow2).digest('hex'), sha512: createHash('sha512').update(qcow2).digest('hex') };
    s3 = new S3Client({ endpoint: services.s3.endpoint, region: services.s3.region, forcePathStyle: true, credentials: { accessKeyId: services.s3.accessKeyId, secretAccessKey: services.s3.secretAccessKey } });
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    http = await startRangeServer();
    port = await freePort();
    const tokensFile = join(dir, 'tokens.json');
    await writeFile(tokensFile, JSON.stringify({ tokens: [
      { token: ALICE, project_id: 'project-a', user_id: 'alice', roles: ['member'] },
      { token: BOB, project_id: 'project-b', user_id: 'bob', roles: ['member'] },
      { token: NOVA, project_id: 'project-a', user_id: 'nova', roles: ['member', 'service'] },
      { token: READER, project_id: 'project-a', user_id: 'rita', roles: ['reader'] },
    ] }), { mode: 0o600 });
    await mkdir(join(dir, 'data'));
    const env: Record<string, string> = {
      PIR_ADMIN_TOKEN: ADMIN, PIR_TOKENS_FILE: tokensFile,
      PIR_EGRESS_ALLOWLIST: new URL(http.base).host, PIR_MAX_IMAGE_SIZE: '32MiB',
      PIR_S3_ENDPOINT: services.s3.endpoint, PIR_S3_BUCKET: services.s3.bucket, PIR_S3_ACCESS_KEY_ID: services.s3.accessKeyId,
      PIR_S3_SECRET_ACCESS_KEY: services.s3.secretAccessKey, PIR_S3_REGION: services.s3.region, PIR_S3_PREFIX: prefix,
      PIR_REGISTER_S3_BUCKETS: bucket, PIR_SHOW_IMAGE_DIRECT_URL: 'true', PIR_SHOW_MULTIPLE_LOCATIONS: 'true',
      // Distributed, each process has a data directory of its own: one webhook key for all (README).
      PIR_WEBHOOK_SECRET_KEY: randomBytes(32).toString('hex'),
    };
    if (mode === 'embedded') {
      const serve = { ...env, PIR_DATA_DIR: join(dir, 'data'), PIR_PORT: String(port) };
      procs.push(await startPirProcess('serve', serve, logDir, `serve-${port}`));
      restart = async () => {
        await procs[0]!.kill();
        procs[0] = await startPirProcess('serve', serve, logDir, `serve-${port}-2`);
      };
    } else {
      // No shared filesystem: each process has a data directory of its own; the worker reads the locations too.
      const run = uniqueName('reg').replace(/[^A-Za-z0-9]/g, '');
      const mongo = new URL(services.mongodbUrl);
      mongo.pathname = `/${run}`;
      Object.assign(env, { PIR_KAFKA_BROKERS: services.kafkaBrokers.join(','), PIR_REDIS_URL: services.redisUrl, PIR_MONGODB_URL: mongo.toString(), PIR_KAFKA_TOPIC: `pir.${run}`, PIR_REDIS_PREFIX: run });
      procs.push(await startPirProcess('api', { ...env, PIR_DATA_DIR: join(dir, 'api'), PIR_PORT: String(port) }, logDir, `api-${port}`));
      procs.push(await startPirProcess('worker', { ...env, PIR_DATA_DIR: join(dir, 'worker') }, logDir, `worker-${port}`));
      restart = async () => {
        await procs[1]!.kill();
        procs[1] = await startPirProcess('worker', { ...env, PIR_DATA_DIR: join(dir, 'worker-2') }, logDir, `worker-${port}-2`);
      };
    }
    const client = (token: string) => new PirClient(`http://127.0.0.1:${port}`, token);
    as = { admin: client(ADMIN), alice: client(ALICE), bob: client(BOB), nova: client(NOVA), reader: client(READER) };
  });

  after(async () => {
    for (const p of procs) await p.stop();
    await http?.close();
    for (const key of keys) await s3?.send(new DeleteObjectCommand({ Bucket: bucket, Key: key })).catch(() => {});
    await s3?.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => {});
    s3?.destroy();
    if (dir) await removeDir(dir);
  });

  const newImage = async (who: PirClient, fields: Record<string, unknown> = {}) => (await who.createImage({ name: 'registered', disk_format: 'qcow2', container_format: 'bare', ...fields })).id as string;
  const addLocation = (who: PirClient, id: string, body: Record<string, unknown>) => who.call('POST', `/v2/images/${id}/locations`, body);
  async function settled(id: string, timeoutMs = 180_000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { body } = await as.admin.getImage(id);
      if (body.status === 'active' || body.status === 'killed' || body.status === 'queued') return body;
      if (Date.now() > deadline) throw new Error(`image ${id} still ${body.status} after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  /** Objects PIR's own store holds for the image (registering must leave none). */
  async function ownObjects(id: string): Promise<string[]> {
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: services.s3.bucket, Prefix: prefix }));
    return (listed.Contents ?? []).map((o) => o.Key!).filter((k) => k.includes(id));
  }
  const download = async (who: PirClient, id: string, headers: Record<string, string> = {}) => {
    const { req, response } = who.client.transport.open('GET', `/v2/images/${id}/file`, headers);
    req.end();
    const res = await response;
    const chunks: Buffer[] = [];
    for await (const chunk of res) chunks.push(chunk as Buffer);
    return { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) };
  };
  const noLeak = (text: string, ...secrets: string[]) => {
    for (const s of secrets) assert.ok(!text.includes(s), `leaked ${s} in ${text}`);
  };

  it('registers an http(s) location: inspected and hashed by reading it once, never copied; downloads with Range served from it', async () => {
    http.objects.set('/disk.qcow2', { data: qcow2 });
    const id = await newImage(as.alice);
    const url = `${http.base}/disk.qcow2?signature=${SIGNATURE}`;
    const added = await addLocation(as.alice, id, { url, validation_data: { os_hash_algo: 'sha512', os_hash_value: digests.sha512 } });
    assert.equal(added.status, 202, JSON.stringify(added.body));
    const image = await settled(id);
    assert.equal(image.status, 'active', JSON.stringify(image.pir_failure));
    assert.equal(image.size, qcow2.length);
    assert.equal(image.checksum, digests.md5);
    assert.equal(image.os_hash_value, digests.sha512);
    assert.equal(image.virtual_size, qcow2Virtual);
    assert.equal(image.pir_pipeline.method, 'location');
    // Read once for the digests, plus bounded inspection ranges: never a second whole pass.
    const sent = http.sent.get('/disk.qcow2')!;
    console.log(`# http location: ${qcow2.length} bytes, server sent ${sent} during registration (${(sent / qcow2.length).toFixed(3)} reads)`);
    assert.ok(sent < qcow2.length + 4 * 1024 * 1024, `server sent ${sent} bytes for a ${qcow2.length}-byte object`);
    assert.deepEqual(await ownObjects(id), [], 'nothing of the image in PIR\'s own bucket');
    const whole = await download(as.alice, id);
    assert.equal(whole.status, 200);
    assert.equal(createHash('sha512').update(whole.body).digest('hex'), digests.sha512);
    const before = http.ranges.get('/disk.qcow2')!.length;
    const part = await download(as.alice, id, { range: 'bytes=1000-1999' });
    assert.equal(part.status, 206);
    assert.equal(part.headers['content-range'], `bytes 1000-1999/${qcow2.length}`);
    assert.deepEqual(part.body, qcow2.subarray(1000, 2000));
    assert.ok(http.ranges.get('/disk.qcow2')!.slice(before).includes('bytes=1000-1999'), 'the Range went through to the location');
    noLeak(output(), SIGNATURE);
  });

  it(`${mode === 'embedded' ? 'pir serve' : 'the worker'} SIGKILLed while reading a location: the durable register-location job reads it again and the image becomes active`, async () => {
    // 8 MiB at 1 MiB/s: the digest pass is under way when the process dies.
    http.objects.set('/slow.qcow2', { data: qcow2, bytesPerSecond: 2 ** 20 });
    const id = await newImage(as.alice);
    const added = await addLocation(as.alice, id, { url: `${http.base}/slow.qcow2`, validation_data: { os_hash_algo: 'sha512', os_hash_value: digests.sha512 } });
    assert.equal(added.status, 202, JSON.stringify(added.body));
    // Wait (up to 30 s, not 5 s: the job may start late on a loaded machine) for the whole read to
    // begin; killed before it, the image would be read once only and 'whole >= 2' below would fail.
    for (let i = 0; i < 600 && !(http.ranges.get('/slow.qcow2') ?? []).includes(null); i++) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal((await as.alice.getImage(id)).body.status, 'uploading', 'killed while the bytes were being read');
    await restart();
    const image = await settled(id, 240_000);
    assert.equal(image.status, 'active', JSON.stringify(image.pir_failure));
    assert.equal(image.os_hash_value, digests.sha512);
    const whole = (http.ranges.get('/slow.qcow2') ?? []).filter((r) => r === null).length;
    assert.ok(whole >= 2, `read again from the start after the kill (${whole} whole reads)`);
  });

  it('registers an s3:// object of an allowed bucket (service user), and deleting the image leaves the object', async () => {
    await put('images/disk.qcow2', qcow2);
    const id = await newImage(as.alice);
    const added = await addLocation(as.nova, id, { url: `s3://${bucket}/images/disk.qcow2`, validation_data: { checksum: digests.md5 } });
    assert.equal(added.status, 202, JSON.stringify(added.body));
    const image = await settled(id);
    assert.equal(image.status, 'active', JSON.stringify(image.pir_failure));
    assert.equal(image.os_hash_value, digests.sha512);
    assert.equal(image.virtual_size, qcow2Virtual);
    assert.deepEqual(await ownObjects(id), []);
    const part = await download(as.alice, id, { range: `bytes=${qcow2.length - 100}-` });
    assert.equal(part.status, 206);
    assert.deepEqual(part.body, qcow2.subarray(qcow2.length - 100));
    const locations = await as.nova.call('GET', `/v2/images/${id}/locations`);
    assert.deepEqual(locations.body, [{ url: `s3://${bucket}/images/disk.qcow2`, metadata: {} }]);
    assert.equal((await as.alice.call('DELETE', `/v2/images/${id}`)).status, 204);
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'images/disk.qcow2' }));
    assert.equal(head.ContentLength, qcow2.length);
  });

  if (full) it('glance location-add (PATCH add /locations/-) registers an http location', { skip: !haveGlance && !inCI ? 'no glance command' : false }, async () => {
    if (!haveGlance) throw new Error('CI is set but the glance command is missing');
    http.objects.set('/glance.qcow2', { data: qcow2 });
    const id = await newImage(as.alice);
    const home = join(dir, 'home');
    await mkdir(home, { recursive: true });
    const { stdout } = await run('bash', ['-c', 'exec glance "$@" <&-', 'glance', '--os-image-url', `http://127.0.0.1:${port}`, `--os-auth-token=${ALICE}`,
      'location-add', '--url', `${http.base}/glance.qcow2`, '--metadata', '{"note": "from glance"}', id], { env: { PATH: process.env.PATH ?? '', HOME: home } });
    assert.match(stdout, new RegExp(id));
    const image = await settled(id);
    assert.equal(image.status, 'active', JSON.stringify(image.pir_failure));
    assert.equal(image.os_hash_value, digests.sha512);
    const shown = (await as.alice.getImage(id)).body;
    assert.deepEqual(shown.locations, [{ url: `${http.base}/glance.qcow2`, metadata: { note: 'from glance' } }]);
    assert.equal(shown.direct_url, `${http.base}/glance.qcow2`);
  });

  if (full) it('pir image register --location URL --wait registers and follows the image to active; a wrong --sha512 ends in its refusal', async () => {
    http.objects.set('/cli.qcow2', { data: qcow2 });
    const home = join(dir, 'cli-home');
    await mkdir(home, { recursive: true });
    const cli = (args: string[]) => runCli(args, { HOME: home, PIR_URL: `http://127.0.0.1:${port}`, PIR_TOKEN: ALICE });
    const ok = await cli(['--format', 'json', 'image', 'register', 'from-cli', '--location', `${http.base}/cli.qcow2`, '--sha512', digests.sha512, '--disk-format', 'qcow2', '--container-format', 'bare', '--wait']);
    assert.equal(ok.code, 0, ok.stderr);
    const image = JSON.parse(ok.stdout);
    assert.equal(image.status, 'active');
    assert.equal(image.os_hash_value, digests.sha512);
    assert.equal(image.pir_pipeline.method, 'location');
    const bad = await cli(['image', 'register', 'from-cli-bad', '--location', `${http.base}/cli.qcow2`, '--sha512', 'e'.repeat(128), '--disk-format', 'qcow2', '--container-format', 'bare', '--wait']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /location_validation_failed/);
    const again = await cli(['image', 'register', 'from-cli', '--location', `${http.base}/cli.qcow2`, '--disk-format', 'qcow2', '--container-format', 'bare']);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /exists .*choose another name/);
  });

  it('an object changed after registration is not served (size, ETag or Last-Modified differ): 409 location_changed, no URL in the message', async () => {
    http.objects.set('/changing.qcow2', { data: qcow2 });
    const id = await newImage(as.alice);
    assert.equal((await addLocation(as.alice, id, { url: `${http.base}/changing.qcow2` })).status, 202);
    assert.equal((await settled(id)).status, 'active');
    // Same size, other bytes (another ETag).
    const changed = Buffer.from(qcow2);
    changed[qcow2.length - 1] ^= 0xff;
    http.objects.set('/changing.qcow2', { data: changed });
    for (const headers of [{}, { range: 'bytes=0-99' }] as Record<string, string>[]) {
      const answer = await download(as.alice, id, headers);
      assert.equal(answer.status, 409);
      const error = JSON.parse(answer.body.toString()).error;
      assert.equal(error.error_code, 'location_changed');
      noLeak(error.message, http.base, '127.0.0.1', 'changing.qcow2');
    }
    // Only Last-Modified moves (same bytes): still refused.
    http.objects.set('/changing.qcow2', { data: qcow2, lastModified: 'Wed, 02 Dec 2026 10:00:00 GMT' });
    assert.equal((await download(as.alice, id)).status, 409);
    // S3: overwritten with other bytes.
    await put('images/changing.qcow2', qcow2);
    const s3id = await newImage(as.alice);
    assert.equal((await addLocation(as.admin, s3id, { url: `s3://${bucket}/images/changing.qcow2` })).status, 202);
    assert.equal((await settled(s3id)).status, 'active');
    await put('images/changing.qcow2', changed);
    const s3answer = await download(as.alice, s3id);
    assert.equal(s3answer.status, 409);
    assert.equal(JSON.parse(s3answer.body.toString()).error.error_code, 'location_changed');
    noLeak(s3answer.body.toString(), bucket);
  });

  it('a location that later redirects to a private address, or vanishes, answers 503 location_unreadable naming no host', async () => {
    http.objects.set('/moving.qcow2', { data: qcow2 });
    const id = await newImage(as.alice);
    assert.equal((await addLocation(as.alice, id, { url: `${http.base}/moving.qcow2` })).status, 202);
    assert.equal((await settled(id)).status, 'active');
    http.redirects.set('/moving.qcow2', 'http://10.0.0.5/moving.qcow2');
    const redirected = await download(as.alice, id);
    assert.equal(redirected.status, 503);
    assert.equal(JSON.parse(redirected.body.toString()).error.error_code, 'location_unreadable');
    noLeak(redirected.body.toString(), '10.0.0.5', http.base, '127.0.0.1');
    http.redirects.delete('/moving.qcow2');
    http.objects.delete('/moving.qcow2');
    const gone = await download(as.alice, id, { range: 'bytes=0-9' });
    assert.equal(gone.status, 503);
    assert.equal(JSON.parse(gone.body.toString()).error.error_code, 'location_unreadable');
  });

  const killedCases: [string, () => Promise<string>, string][] = [
    ['a redirect to a private address', async () => { http.redirects.set('/to-private', 'http://10.1.2.3/disk.qcow2'); return `${http.base}/to-private`; }, 'address_refused'],
    ['a redirect to loopback on another port', async () => { http.redirects.set('/to-loopback', 'http://127.0.0.1:9/disk.qcow2'); return `${http.base}/to-loopback`; }, 'address_refused'],
    ['an object larger than PIR_MAX_IMAGE_SIZE (never read)', async () => { http.objects.set('/huge.qcow2', { data: qcow2.subarray(0, 4096), claimedSize: 64 * 2 ** 20 }); return `${http.base}/huge.qcow2`; }, 'image_too_large'],
    ['a too-small object', async () => { http.objects.set('/tiny.qcow2', { data: Buffer.from('QFI\xfb') }); return `${http.base}/tiny.qcow2`; }, 'location_too_small'],
    ['non-image bytes declared qcow2', async () => { http.objects.set('/random.qcow2', { data: randomBytes(2 ** 20) }); return `${http.base}/random.qcow2`; }, 'format_mismatch'],
    ['a gzip-compressed image (would need a copy)', async () => { http.objects.set('/disk.qcow2.gz', { data: gzipSync(qcow2.subarray(0, 2 ** 20)) }); return `${http.base}/disk.qcow2.gz`; }, 'location_not_a_disk'],
    ['a server that ignores Range', async () => { http.objects.set('/noranges.qcow2', { data: qcow2, ranges: false }); return `${http.base}/noranges.qcow2`; }, 'location_no_ranges'],
    ['a missing object', async () => `${http.base}/absent.qcow2`, 'upstream_status'],
    ['a missing S3 object', async () => `s3://${bucket}/images/absent.qcow2`, 'location_unreadable'],
  ];
  for (const [label, urlOf, code] of full ? killedCases : killedCases.slice(0, 1)) {
    it(`kills the image for ${label} (${code}), with a reason that does not name the location`, async () => {
      const url = await urlOf();
      const id = await newImage(as.alice);
      const added = await addLocation(url.startsWith('s3:') ? as.admin : as.alice, id, { url });
      assert.equal(added.status, 202, JSON.stringify(added.body));
      const image = await settled(id);
      assert.equal(image.status, 'killed');
      assert.equal(image.pir_failure.code, code, JSON.stringify(image.pir_failure));
      noLeak(JSON.stringify(image.pir_failure), http.base, '127.0.0.1', '10.1.2.3', bucket);
      assert.deepEqual(await ownObjects(id), []);
    });
  }

  it('validation_data that differs kills the image with a clear reason', async () => {
    http.objects.set('/valid.qcow2', { data: qcow2 });
    const id = await newImage(as.alice);
    const wrong = 'f'.repeat(128);
    assert.equal((await addLocation(as.alice, id, { url: `${http.base}/valid.qcow2`, validation_data: { os_hash_algo: 'sha512', os_hash_value: wrong } })).status, 202);
    const image = await settled(id);
    assert.equal(image.status, 'killed');
    assert.equal(image.pir_failure.code, 'location_validation_failed');
    assert.match(image.pir_failure.message, new RegExp(`sha512 ${digests.sha512}.*validation_data.os_hash_value said ${wrong}`));
  });

  it('refuses at the call: other schemes, unallowed buckets, PIR\'s own bucket (other tenants\' bytes), loopback, bad validation_data', async () => {
    const refusals: [PirClient, Record<string, unknown>, number, string][] = [
      [as.admin, { url: 'file:///etc/passwd' }, 400, 'location_refused'],
      [as.admin, { url: 's3://not-allowed-bucket/disk.qcow2' }, 400, 'location_refused'],
      [as.admin, { url: `s3://${services.s3.bucket}/${prefix}images/anything` }, 400, 'location_refused'],
      [as.admin, { url: `s3://${bucket}/../x` }, 400, 'location_refused'],
      [as.alice, { url: `http://127.0.0.1:${port}/v2/images/x/file` }, 400, 'address_refused'], // PIR itself: another tenant's image
      [as.alice, { url: 'http://169.254.169.254/latest/meta-data/' }, 400, 'address_refused'],
      [as.alice, { url: `${http.base}/disk.qcow2`, validation_data: { os_hash_algo: 'sha256', os_hash_value: 'ab' } }, 400, 'location_invalid'],
      [as.alice, { url: `${http.base}/disk.qcow2`, validation_data: { checksum: 'nothex' } }, 400, 'location_invalid'],
      [as.alice, { url: 42 }, 400, 'invalid_request'],
      [as.alice, { url: `${http.base}/disk.qcow2`, extra: 1 }, 400, 'invalid_request'],
    ];
    for (const [who, body, status, code] of refusals) {
      const id = await newImage(as.alice);
      const answer = await addLocation(who, id, body);
      assert.equal(answer.status, status, `${JSON.stringify(body)} → ${JSON.stringify(answer.body)}`);
      assert.equal(answer.body.error.error_code, code, JSON.stringify(body));
      assert.equal((await as.admin.getImage(id)).body.status, 'queued');
    }
  });

  if (full) it('cross-tenant: who may add a location, who sees it, and the locations API', async () => {
    http.objects.set('/shared.qcow2', { data: qcow2 });
    await put('images/tenant.qcow2', qcow2);
    const url = `${http.base}/shared.qcow2`;
    const id = await newImage(as.alice);
    // Another project: the image does not exist for it.
    assert.equal((await addLocation(as.bob, id, { url })).status, 404);
    // A reader of the owner: policy.
    assert.equal((await addLocation(as.reader, id, { url })).status, 403);
    // The owner's member may not add s3:// (the operator's buckets): admin or service only.
    const s3refused = await addLocation(as.alice, id, { url: `s3://${bucket}/images/tenant.qcow2` });
    assert.equal(s3refused.status, 403);
    assert.equal(s3refused.body.error.error_code, 'policy_denied');
    assert.equal((await addLocation(as.alice, id, { url })).status, 202);
    assert.equal((await settled(id)).status, 'active');
    // A second location, or one on an active image: refused; replace/remove: refused.
    assert.equal((await addLocation(as.alice, id, { url })).status, 409);
    const patch = (who: PirClient, ops: unknown) => who.call('PATCH', `/v2/images/${id}`, ops, { 'content-type': 'application/openstack-images-v2.1-json-patch' });
    assert.equal((await patch(as.alice, [{ op: 'remove', path: '/locations/0' }])).body.error.error_code, 'location_immutable');
    assert.equal((await patch(as.alice, [{ op: 'replace', path: '/locations', value: [] }])).body.error.error_code, 'location_immutable');
    // Make it public: every project reads it, none but the owner and admins sees where it lives.
    assert.equal((await as.admin.call('PATCH', `/v2/images/${id}`, [{ op: 'replace', path: '/visibility', value: 'public' }], { 'content-type': 'application/openstack-images-v2.1-json-patch' })).status, 200);
    const owner = (await as.alice.getImage(id)).body;
    assert.deepEqual(owner.locations, [{ url, metadata: {} }]);
    assert.equal(owner.direct_url, url);
    const other = (await as.bob.getImage(id)).body;
    assert.equal(other.locations, undefined);
    assert.equal(other.direct_url, undefined);
    const listed = await as.bob.call('GET', '/v2/images?visibility=public');
    noLeak(JSON.stringify(listed.body), http.base);
    assert.equal((await download(as.bob, id)).status, 200);
    // The locations API: service users and admins only.
    assert.equal((await as.alice.call('GET', `/v2/images/${id}/locations`)).status, 403);
    assert.equal((await as.bob.call('GET', `/v2/images/${id}/locations`)).status, 403);
    assert.deepEqual((await as.admin.call('GET', `/v2/images/${id}/locations`)).body, [{ url, metadata: {} }]);
    // Private image of project-a: project-b gets 404 everywhere.
    const priv = await newImage(as.alice);
    assert.equal((await as.bob.call('GET', `/v2/images/${priv}/locations`)).status, 404);
    // Events and revisions carry no location.
    const revisions = await as.alice.call('GET', `/v2/images/${id}/revisions`);
    noLeak(JSON.stringify(revisions.body), http.base);
  });
});
}
