/**
 * Resumable uploads (tus 1.0) at /v2/images/{id}/uploads: the protocol's calls and refusals,
 * connections cut at random points over raw sockets, the official tus-js-client (also across a
 * proxy that cuts it), the hash state rebuilt from staged bytes alone, and the sweepers' rules.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import * as tus from 'tus-js-client';
import { SYSTEM_CALLER } from '../../../core/caller.js';
import { Quotas, UNLIMITED } from '../../../core/quota.js';
import { HashPool } from '../../../ingest/hashing/index.js';
import { rebuildStats } from '../../../ingest/tus/digests.js';
import { ResumableUploads } from '../../../ingest/tus/resumable-uploads.js';
import { FileTusStaging } from '../../../ingest/tus/staging.js';
import { LocalLeases } from '../../../ingest/tus/upload-leases.js';
import { Sweepers } from '../../../workers/sweepers.js';
import { domain, P, silent } from '../core/fixtures.js';
import { assertErrorShape, RawConnection } from './app-fixture.js';
import { testApp, type TestApp } from './tenant-app.js';
import { cuttingProxy } from '../../support/cutting-proxy.js';

const MiB = 1024 * 1024;
const TUS = { 'tus-resumable': '1.0.0' };
const PATCH_TYPE = { 'content-type': 'application/offset+octet-stream' };

/** Deterministic pseudo-random bytes (a raw image: whole sectors; no format magic at 0 by construction). */
function image(size: number, seed = 1): Buffer {
  const out = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    out.writeUInt32LE(x >>> 0, i);
  }
  out.fill(0, 0, 512); // a zero first sector: nothing to mistake for a format header
  return out;
}
const sha512 = (b: Buffer) => createHash('sha512').update(b).digest('hex');
const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
const sha1b64 = (b: Buffer) => createHash('sha1').update(b).digest('base64');

async function settled(t: TestApp, id: string): Promise<{ status: string; checksum: string | null; os_hash_value: string | null; size: number | null }> {
  for (let i = 0; i < 500; i++) {
    const doc = (await t.d.manifest.get(id))!;
    if (doc.status === 'active' || doc.status === 'killed') return doc;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`image ${id} did not settle`);
}

describe('tus resumable uploads (in process)', () => {
  let t: TestApp;
  let port: number;
  before(async () => {
    t = await testApp();
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    port = (t.app.server.address() as { port: number }).port;
  });
  after(async () => { t.app.server.closeAllConnections(); await t.close(); });

  const create = async (length: number, id?: string) => {
    id ??= await t.create('a-member');
    const res = await t.call('a-member', 'POST', `/v2/images/${id}/uploads`, undefined, { ...TUS, 'upload-length': String(length) });
    assert.equal(res.statusCode, 201, res.body);
    return { id, location: res.headers.location as string, res };
  };
  const head = (location: string) => t.call('a-member', 'HEAD', location, undefined, TUS);
  const patch = (location: string, offset: number, body: Buffer, headers: Record<string, string> = {}) =>
    t.call('a-member', 'PATCH', location, body, { ...TUS, ...PATCH_TYPE, 'upload-offset': String(offset), ...headers });

  it('answers OPTIONS with the version, extensions, max size and checksum algorithms', async () => {
    const id = await t.create('a-member');
    const res = await t.call('a-member', 'OPTIONS', `/v2/images/${id}/uploads`);
    assert.equal(res.statusCode, 204);
    assert.equal(res.headers['tus-version'], '1.0.0');
    assert.equal(res.headers['tus-resumable'], '1.0.0');
    assert.deepEqual(String(res.headers['tus-extension']).split(','), ['creation', 'termination', 'checksum', 'expiration']);
    assert.equal(res.headers['tus-max-size'], String(2 ** 30));
    assert.ok(String(res.headers['tus-checksum-algorithm']).split(',').includes('sha1'));
  });

  it('takes an image in several checksummed PATCHes; the pipeline starts with the last byte, hashes over the whole image', async () => {
    const data = image(3 * MiB);
    const { id, location, res } = await create(data.length);
    assert.match(location, new RegExp(`^/v2/images/${id}/uploads/[0-9a-f]{32}$`));
    assert.ok(Date.parse(String(res.headers['upload-expires'])) > Date.now() + 3600_000);
    assert.equal((await t.d.manifest.get(id))!.status, 'saving');
    const cuts = [0, MiB, 2 * MiB + 17, data.length];
    for (let i = 0; i < cuts.length - 1; i++) {
      const part = data.subarray(cuts[i], cuts[i + 1]);
      const r = await patch(location, cuts[i]!, part, { 'upload-checksum': `sha1 ${sha1b64(part)}` });
      assert.equal(r.statusCode, 204, r.body);
      assert.equal(r.headers['upload-offset'], String(cuts[i + 1]));
      if (i < cuts.length - 2) {
        const h = await head(location);
        assert.equal(h.headers['upload-offset'], String(cuts[i + 1]));
        assert.equal(h.headers['upload-length'], String(data.length));
        assert.equal(h.headers['cache-control'], 'no-store');
      }
    }
    const doc = await settled(t, id);
    assert.equal(doc.status, 'active');
    assert.equal(doc.size, data.length);
    assert.equal(doc.checksum, md5(data));
    assert.equal(doc.os_hash_value, sha512(data));
    // Finished: HEAD says all of it arrived (a client that lost the last answer learns there is
    // nothing left to send); PATCH and DELETE find no upload in progress.
    const finished = await head(location);
    assert.deepEqual([finished.statusCode, finished.headers['upload-offset'], finished.headers['upload-length']], [200, String(data.length), String(data.length)]);
    assertErrorShape((await patch(location, data.length, Buffer.alloc(0))).json(), 404, 'upload_not_found');
    assert.equal((await t.call('b-member', 'HEAD', location, undefined, TUS)).statusCode, 404, 'another project learns nothing');
  });

  it('completes on HEAD an upload whose bytes are all staged but never committed (PIR died between the last byte and the commit)', async () => {
    const id = await t.create('a-member');
    const data = image(256 * 1024, 9);
    const { location } = await create(data.length, id);
    const commit = t.d.images.completeUpload;
    t.d.images.completeUpload = async () => { throw new Error('the process died before the commit'); };
    try {
      assert.equal((await patch(location, 0, data)).statusCode, 500);
    } finally {
      t.d.images.completeUpload = commit;
    }
    assert.equal((await t.d.manifest.get(id))!.status, 'saving', 'every byte staged, nothing committed');
    const res = await head(location);
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.headers['upload-offset'], String(data.length), 'tus-js-client sees nothing left to send');
    const done = await settled(t, id);
    assert.deepEqual([done.status, done.size, done.checksum, done.os_hash_value], ['active', data.length, md5(data), sha512(data)]);
  });

  it('refuses a new creation at once (409) while a PATCH of the upload is still arriving, without waiting for it', async () => {
    const data = image(256 * 1024, 11);
    const { id, location } = await create(data.length);
    const body = new PassThrough();
    const patching = t.app.inject({ method: 'PATCH', url: location, payload: body, headers: { 'x-auth-token': 'a-member', ...TUS, ...PATCH_TYPE, 'upload-offset': '0' } });
    body.write(data.subarray(0, 1000));
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    const again = await t.call('a-member', 'POST', `/v2/images/${id}/uploads`, undefined, { ...TUS, 'upload-length': String(data.length) });
    assert.ok(Date.now() - started < 2000, `answered after ${Date.now() - started} ms`);
    assertErrorShape(again.json(), 409, 'invalid_status');
    body.end(data.subarray(1000));
    assert.equal((await patching).statusCode, 204);
    assert.equal((await settled(t, id)).status, 'active');
  });

  it('refuses bad protocol input with 4xx in PIR error shape, keeping the staged bytes', async () => {
    const id = await t.create('a-member');
    const post = (headers: Record<string, string>) => t.call('a-member', 'POST', `/v2/images/${id}/uploads`, undefined, headers);
    assertErrorShape((await post({ 'upload-length': '10' })).json(), 412, 'tus_version_unsupported');
    assertErrorShape((await post({ 'tus-resumable': '0.2.2', 'upload-length': '10' })).json(), 412, 'tus_version_unsupported');
    // tus 1.0: a 412 lists the versions the server speaks (Tus-Version), whatever the method.
    for (const [method, url] of [['POST', `/v2/images/${id}/uploads`], ['HEAD', `/v2/images/${id}/uploads/${'0'.repeat(32)}`], ['PATCH', `/v2/images/${id}/uploads/${'0'.repeat(32)}`], ['DELETE', `/v2/images/${id}/uploads/${'0'.repeat(32)}`]] as const) {
      const res = await t.call('a-member', method, url, method === 'PATCH' ? Buffer.alloc(1) : undefined, { 'tus-resumable': '0.2.0', 'upload-length': '10', 'upload-offset': '0', ...(method === 'PATCH' ? PATCH_TYPE : {}) });
      assert.equal(res.statusCode, 412, `${method} ${res.body}`);
      assert.equal(res.headers['tus-version'], '1.0.0', method);
      assert.equal(res.headers['tus-resumable'], '1.0.0', method);
    }
    assert.equal((await post({ 'upload-length': '10' })).headers['tus-version'], '1.0.0', 'also when Tus-Resumable is missing');
    assert.equal((await post({ ...TUS, 'upload-length': '-1' })).headers['tus-version'], undefined, 'only a 412 lists the versions');
    assertErrorShape((await post(TUS)).json(), 400, 'bad_header');
    assertErrorShape((await post({ ...TUS, 'upload-length': '-1' })).json(), 400, 'bad_header');
    assertErrorShape((await post({ ...TUS, 'upload-length': '1e9' })).json(), 400, 'bad_header');
    assertErrorShape((await post({ ...TUS, 'upload-defer-length': '1' })).json(), 400, 'bad_header');
    assertErrorShape((await post({ ...TUS, 'upload-length': String(2 ** 31) })).json(), 413, 'image_too_large');
    assert.equal((await t.d.manifest.get(id))!.status, 'queued', 'refused creations claim nothing');

    const data = image(64 * 1024, 7);
    // An upload that received no byte gives way to a new creation (its client may never have
    // heard of it: PIR died answering the POST); its URL is then unknown.
    const { location: unheard } = await create(data.length, id);
    const { location } = await create(data.length, id);
    assert.notEqual(location, unheard);
    assertErrorShape((await patch(unheard, 0, data.subarray(0, 10))).json(), 404, 'upload_not_found');
    assertErrorShape((await patch(location, 1, data.subarray(0, 10))).json(), 409, 'upload_offset_mismatch');
    assertErrorShape((await t.call('a-member', 'PATCH', location, data, { ...TUS, 'content-type': 'application/octet-stream', 'upload-offset': '0' })).json(), 415, 'bad_content_type');
    assertErrorShape((await patch(location, 0, data.subarray(0, 10), { 'upload-checksum': 'crc32 AAAA' })).json(), 400, 'tus_checksum_algorithm');
    assertErrorShape((await patch(location, 0, data.subarray(0, 10), { 'upload-checksum': 'sha1' })).json(), 400, 'bad_header');
    assertErrorShape((await patch(location, 0, Buffer.concat([data, Buffer.alloc(1)]))).json(), 413, 'upload_length_exceeded');
    assertErrorShape((await patch(location, 0, data.subarray(0, 10), { 'upload-offset': 'x' })).json(), 400, 'bad_header');
    assertErrorShape((await t.call('a-member', 'PATCH', location, data, { ...PATCH_TYPE, 'upload-offset': '0' })).json(), 412, 'tus_version_unsupported');
    // A wrong checksum: 460, and its bytes are not kept.
    const good = await patch(location, 0, data.subarray(0, 1000), { 'upload-checksum': `sha1 ${sha1b64(data.subarray(0, 1000))}` });
    assert.equal(good.headers['upload-offset'], '1000');
    const wrong = await patch(location, 1000, data.subarray(1000, 5000), { 'upload-checksum': `sha1 ${sha1b64(Buffer.from('other'))}` });
    assertErrorShape(wrong.json(), 460, 'tus_checksum_mismatch');
    assert.equal((await head(location)).headers['upload-offset'], '1000');
    // One that received bytes is kept: a new creation is refused while it is in progress.
    assertErrorShape((await post({ ...TUS, 'upload-length': '10' })).json(), 409, 'invalid_status');
    // Unknown uploads and other images' upload ids: 404.
    assertErrorShape((await patch(`/v2/images/${id}/uploads/${'0'.repeat(32)}`, 0, data)).json(), 404, 'upload_not_found');
    assert.equal((await head(`/v2/images/${id}/uploads/${'0'.repeat(32)}`)).statusCode, 404);
    assertErrorShape((await patch(`/v2/images/00000000-0000-0000-0000-000000000000/uploads/${'0'.repeat(32)}`, 0, data)).json(), 404, 'not_found');
    // Other tenants: B sees nothing of A's private image; A's reader may not upload.
    assert.equal((await t.call('b-member', 'HEAD', location, undefined, TUS)).statusCode, 404);
    assert.equal((await t.call('b-member', 'PATCH', location, data.subarray(1000), { ...TUS, ...PATCH_TYPE, 'upload-offset': '1000' })).statusCode, 404);
    assert.equal((await t.call('a-reader', 'PATCH', location, data.subarray(1000), { ...TUS, ...PATCH_TYPE, 'upload-offset': '1000' })).statusCode, 403);
    assert.equal((await t.call('b-member', 'DELETE', location, undefined, TUS)).statusCode, 404);
    // The rest completes the image with the right digests.
    assert.equal((await patch(location, 1000, data.subarray(1000))).statusCode, 204);
    const doc = await settled(t, id);
    assert.equal(doc.os_hash_value, sha512(data));
  });

  it('keeps Upload-Metadata as sent and gives it back on HEAD; never sets image fields from it; refuses malformed metadata (400), claiming nothing', async () => {
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    const id = await t.create('a-member', { name: 'kept' });
    const before = (await t.d.manifest.get(id))!;
    const metadata = `filename ${b64('disk.raw')},visibility ${b64('public')},owner ${b64('B')},name ${b64('renamed')},is_confidential, empty `;
    const post = (headers: Record<string, string>) => t.call('a-member', 'POST', `/v2/images/${id}/uploads`, undefined, { ...TUS, 'upload-length': '4096', ...headers });
    for (const bad of ['filename not-base64!', `a ${b64('1')},a ${b64('2')}`, `a ${b64('1')},,b ${b64('2')}`, ',', `k ${'A'.repeat(4096)}`]) {
      const res = await post({ 'upload-metadata': bad });
      assertErrorShape(res.json(), 400, 'tus_metadata_invalid');
      assert.equal(res.headers['tus-resumable'], '1.0.0');
    }
    assert.equal((await t.d.manifest.get(id))!.status, 'queued', 'refused creations claim nothing');
    const created = await post({ 'upload-metadata': metadata });
    assert.equal(created.statusCode, 201, created.body);
    const location = created.headers.location as string;
    const h = await head(location);
    assert.equal(h.statusCode, 200);
    assert.equal(h.headers['upload-metadata'], metadata, 'returned exactly as sent');
    const doc = (await t.d.manifest.get(id))!;
    assert.deepEqual([doc.name, doc.visibility, doc.owner], ['kept', before.visibility, 'A'], 'metadata sets nothing of the image');
    assert.notEqual(doc.visibility, 'public');
    assert.deepEqual(doc.properties, {});
    assert.equal((await patch(location, 0, Buffer.alloc(4096))).statusCode, 204);
    assert.equal((await settled(t, id)).status, 'active');
    // Without Upload-Metadata, HEAD sends none.
    const plain = await create(10);
    assert.equal((await head(plain.location)).headers['upload-metadata'], undefined);
  });

  it('answers 410 upload_expired to HEAD, PATCH and DELETE of an expired upload, whichever comes first, and after it was abandoned', async () => {
    const expire = async (id: string) => {
      await t.d.manifest.update(id, (draft) => { draft.upload!.resumable!.expires_at = new Date(Date.now() - 1000).toISOString(); return []; });
    };
    const del = (location: string) => t.call('a-member', 'DELETE', location, undefined, TUS);
    const gone = (res: { statusCode: number; json(): unknown; headers: Record<string, unknown> }, what: string) => {
      assert.equal(res.statusCode, 410, what);
      assert.equal(res.headers['tus-resumable'], '1.0.0', what);
    };
    const data = Buffer.alloc(8192);
    for (const first of ['HEAD', 'PATCH', 'DELETE'] as const) {
      const { id, location } = await create(data.length);
      assert.equal((await patch(location, 0, data.subarray(0, 1024))).statusCode, 204);
      await expire(id);
      const answer = first === 'HEAD' ? await head(location) : first === 'PATCH' ? await patch(location, 1024, data.subarray(1024)) : await del(location);
      gone(answer, `${first} first`);
      if (first !== 'HEAD') {
        assertErrorShape(answer.json(), 410, 'upload_expired');
        assert.match((answer.json() as { error: { message: string } }).error.message, /expired at .* and was abandoned.*POST \/v2\/images\/.*\/uploads/);
      }
      // The upload was abandoned: image queued, staging gone, and every later request is 410 too.
      const doc = (await t.d.manifest.get(id))!;
      assert.equal(doc.status, 'queued', first);
      assert.equal(doc.upload, null);
      gone(await head(location), `HEAD after ${first}`);
      const later = await patch(location, 1024, data.subarray(1024));
      assertErrorShape(later.json(), 410, 'upload_expired');
      assertErrorShape((await del(location)).json(), 410, 'upload_expired');
      // Another project still sees nothing; a new upload of the image works, its URL is not gone.
      assert.equal((await t.call('b-member', 'PATCH', location, data, { ...TUS, ...PATCH_TYPE, 'upload-offset': '0' })).statusCode, 404);
      const again = await create(data.length, id);
      assert.equal((await patch(again.location, 0, data)).statusCode, 204);
      assert.equal((await settled(t, id)).status, 'active');
      gone(await head(location), 'the expired URL stays 410');
      assert.equal((await head(again.location)).headers['upload-offset'], String(data.length), 'a finished upload: all of it arrived');
    }
  });

  it('tus-js-client given an expired upload\'s URL sees 410 and starts a new upload', async () => {
    const data = image(256 * 1024, 31);
    const { id, location } = await create(data.length);
    assert.equal((await patch(location, 0, data.subarray(0, 4096))).statusCode, 204);
    await t.d.manifest.update(id, (draft) => { draft.upload!.resumable!.expires_at = new Date(Date.now() - 1000).toISOString(); return []; });
    const statuses: string[] = [];
    await new Promise<void>((resolve, reject) => {
      new tus.Upload(data, {
        endpoint: `http://127.0.0.1:${port}/v2/images/${id}/uploads`, uploadUrl: `http://127.0.0.1:${port}${location}`,
        headers: { 'X-Auth-Token': 'a-member' }, uploadSize: data.length,
        onAfterResponse: (req, res) => { statuses.push(`${req.getMethod()} ${res.getStatus()}`); },
        onError: reject, onSuccess: () => resolve(),
      }).start();
    });
    assert.deepEqual(statuses, ['HEAD 410', 'POST 201', 'PATCH 204']);
    const doc = await settled(t, id);
    assert.equal(doc.status, 'active');
    assert.equal(doc.os_hash_value, sha512(data));
  });

  it('takes Upload-Length 0 as an empty raw disk, and refuses it for a format with a header, the image staying queued', async () => {
    const raw = await create(0);
    assert.equal((await settled(t, raw.id)).status, 'active');
    const qcow2 = await t.create('a-member', { disk_format: 'qcow2', container_format: 'bare' });
    const refused = await t.call('a-member', 'POST', `/v2/images/${qcow2}/uploads`, undefined, { ...TUS, 'upload-length': '0' });
    assert.equal(refused.statusCode, 415);
    assertErrorShape(refused.json(), 415, 'empty_image');
    assert.match(refused.json().error.message, /0 bytes long, which no qcow2 image is.*back in queued/);
    assert.equal((await t.d.manifest.get(qcow2))!.status, 'queued');
  });

  it('terminates an upload with DELETE: the image is back in queued, and can be uploaded again', async () => {
    const data = image(128 * 1024, 3);
    const { id, location } = await create(data.length);
    assert.equal((await patch(location, 0, data.subarray(0, 4096))).statusCode, 204);
    const del = await t.call('a-member', 'DELETE', location, undefined, TUS);
    assert.equal(del.statusCode, 204);
    assert.equal(del.headers['tus-resumable'], '1.0.0');
    assert.equal((await t.d.manifest.get(id))!.status, 'queued');
    assert.equal((await head(location)).statusCode, 404);
    const again = await create(data.length, id);
    assert.equal((await patch(again.location, 0, data)).statusCode, 204);
    assert.equal((await settled(t, id)).os_hash_value, sha512(data));
  });

  it('resumes after connections cut at random points (raw sockets), hashing each byte once', async () => {
    const data = image(4 * MiB, 11);
    const { id, location } = await create(data.length);
    let offset = 0;
    let cuts = 0;
    let seed = 12345;
    const random = () => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31; };
    while (offset < data.length && cuts < 6) {
      const remaining = data.length - offset;
      const send = Math.max(1, Math.floor(random() * remaining * 0.5));
      const conn = new RawConnection(port);
      await conn.write(`PATCH ${location} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: a-member\r\nTus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\nUpload-Offset: ${offset}\r\nContent-Length: ${remaining}\r\n\r\n`);
      await conn.write(data.subarray(offset, offset + send));
      await new Promise((r) => setTimeout(r, 30));
      conn.destroy();
      cuts += 1;
      const h = await head(location);
      assert.equal(h.statusCode, 200, h.body);
      const now = Number(h.headers['upload-offset']);
      assert.ok(now >= offset && now <= offset + send, `offset ${now} after sending ${offset}+${send}`);
      offset = now;
    }
    const before = { ...rebuildStats };
    assert.equal((await patch(location, offset, data.subarray(offset))).statusCode, 204);
    assert.equal(rebuildStats.bytes, before.bytes, 'the process held the hash state: nothing was read back');
    const doc = await settled(t, id);
    assert.equal(doc.status, 'active');
    assert.equal(doc.checksum, md5(data));
    assert.equal(doc.os_hash_value, sha512(data));
  });

  it('works with the official tus-js-client, also when a proxy cuts its connections', async () => {
    const data = image(3 * MiB, 21);
    const id = await t.create('a-member');
    const proxy = await cuttingProxy(port, [300 * 1024, 100 * 1024]);
    try {
      const progress: number[] = [];
      await new Promise<void>((resolve, reject) => {
        const upload = new tus.Upload(data, {
          endpoint: `http://127.0.0.1:${proxy.port}/v2/images/${id}/uploads`,
          headers: { 'X-Auth-Token': 'a-member' },
          chunkSize: 512 * 1024,
          retryDelays: [0, 50, 100, 200, 400],
          uploadSize: data.length,
          onProgress: (sent) => { progress.push(sent); },
          onError: reject,
          onSuccess: () => resolve(),
        });
        upload.start();
      });
      assert.ok(proxy.cuts() >= 2, `the proxy cut ${proxy.cuts()} connections`);
      const doc = await settled(t, id);
      assert.equal(doc.status, 'active');
      assert.equal(doc.size, data.length);
      assert.equal(doc.os_hash_value, sha512(data));
      assert.equal(doc.checksum, md5(data));
    } finally {
      await proxy.close();
    }
  });
});

describe('tus upload state across a restart', () => {
  it('rebuilds md5/sha512 by reading back only the staged bytes, then hashes the rest once', async () => {
    const d = await domain();
    try {
      const quotas = new Quotas(null, { default: UNLIMITED, projects: {} });
      const deps = { images: d.images, blobs: d.blobs, quotas, hashes: HashPool.shared(), upload: { maxImageSize: 2 ** 30, heartbeatMs: 60_000, idleMs: 60_000 }, staging: new FileTusStaging(d.blobs), expirySeconds: 3600 };
      const { id } = await d.images.create(P, { disk_format: 'raw', container_format: 'bare' });
      const data = image(2 * MiB + 512, 5);
      const first = new ResumableUploads(deps);
      const upload = await first.create(P, id, data.length);
      const half = MiB + 512;
      await first.patch(P, id, upload.id, { offset: 0, body: streamOf(data.subarray(0, half)), contentLength: half, checksum: null });
      // "Restart": a new instance knows nothing but the manifest and the staged bytes.
      const second = new ResumableUploads(deps);
      assert.equal((await second.state(P, id, upload.id)).offset, half);
      const before = { ...rebuildStats };
      const state = await second.patch(P, id, upload.id, { offset: half, body: streamOf(data.subarray(half)), contentLength: data.length - half, checksum: null });
      assert.equal(rebuildStats.uploads - before.uploads, 1);
      assert.equal(rebuildStats.bytes - before.bytes, half, 'read back exactly what was staged');
      assert.equal(state.completed?.status, 'importing');
      assert.equal(state.completed?.staging?.sha512, sha512(data));
      assert.equal(state.completed?.staging?.md5, md5(data));
    } finally {
      await d.close();
    }
  });

  it('is kept by the sweepers until it expires, then abandoned (image queued, staging removed)', async () => {
    const d = await domain();
    try {
      const quotas = new Quotas(null, { default: UNLIMITED, projects: {} });
      const deps = { images: d.images, blobs: d.blobs, quotas, hashes: HashPool.shared(), upload: { maxImageSize: 2 ** 30, heartbeatMs: 60_000, idleMs: 60_000 }, staging: new FileTusStaging(d.blobs), expirySeconds: 3600 };
      const { id } = await d.images.create(P, { disk_format: 'raw', container_format: 'bare' });
      const uploads = new ResumableUploads(deps);
      const upload = await uploads.create(P, id, 4096);
      await uploads.patch(P, id, upload.id, { offset: 0, body: streamOf(Buffer.alloc(1024)), contentLength: 1024, checksum: null });
      const sweepers = new Sweepers(d.manifest, d.images, d.relay, d.blobs, { stageDeadlineSeconds: 60, uploadStallSeconds: 1, maxResumes: 1, outboxGraceMs: 0 }, silent);
      // Long past the stall limit, not yet expired: kept, also by the restart recovery.
      await sweepers.sweepStale(Date.now() + 600_000);
      await sweepers.recoverAfterRestart();
      assert.equal((await d.manifest.get(id))!.status, 'saving');
      assert.equal(await deps.staging.offset(id, (await d.manifest.get(id))!.upload!.run), 1024);
      // Past its expiry: abandoned.
      await sweepers.sweepStale(Date.now() + 3601_000);
      const doc = (await d.manifest.get(id))!;
      assert.equal(doc.status, 'queued');
      assert.equal(doc.upload, null);
      // Its URL answers 410 to every request, as before the sweepers came (not 404).
      const expired = (e: Error & { code?: string }) => e.code === 'upload_expired';
      await assert.rejects(uploads.state(SYSTEM_CALLER, id, upload.id), expired);
      await assert.rejects(uploads.patch(P, id, upload.id, { offset: 1024, body: streamOf(Buffer.alloc(1024)), contentLength: 1024, checksum: null }), expired);
      await assert.rejects(uploads.terminate(P, id, upload.id), expired);
    } finally {
      await d.close();
    }
  });
});

describe('tus PATCHes of two API processes sharing one lease store', () => {
  it('lets one append; the other is refused with 423 upload_locked (a PATCH or a termination) until it ends', async () => {
    const d = await domain();
    try {
      const quotas = new Quotas(null, { default: UNLIMITED, projects: {} });
      const leases = new LocalLeases(); // stands for Redis: shared by both "processes"
      const deps = { images: d.images, blobs: d.blobs, quotas, hashes: HashPool.shared(), upload: { maxImageSize: 2 ** 30, heartbeatMs: 60_000, idleMs: 60_000 }, staging: new FileTusStaging(d.blobs), expirySeconds: 3600, leases };
      const [a, b] = [new ResumableUploads(deps), new ResumableUploads(deps)];
      const { id } = await d.images.create(P, { disk_format: 'raw', container_format: 'bare' });
      const data = image(MiB, 9);
      const upload = await a.create(P, id, data.length);
      // A's PATCH takes 256 KiB, then waits for the rest.
      const { body: slowBody, release } = heldBody(data);
      const first = a.patch(P, id, upload.id, { offset: 0, body: slowBody, contentLength: data.length, checksum: null });
      await new Promise((r) => setTimeout(r, 50));
      const locked = (e: Error & { code?: string; status?: number }) => e.code === 'upload_locked';
      await assert.rejects(b.patch(P, id, upload.id, { offset: 0, body: streamOf(data), contentLength: data.length, checksum: null }), locked);
      await assert.rejects(b.terminate(P, id, upload.id), locked);
      release();
      const done = await first;
      assert.equal(done.offset, data.length);
      assert.equal(done.completed?.staging?.sha512, sha512(data), 'only A appended');
    } finally {
      await d.close();
    }
  });

  it('a termination waiting behind a PATCH of its process that finishes the upload is 404, and the image is imported', async () => {
    const d = await domain();
    try {
      const quotas = new Quotas(null, { default: UNLIMITED, projects: {} });
      const uploads = new ResumableUploads({ images: d.images, blobs: d.blobs, quotas, hashes: HashPool.shared(), upload: { maxImageSize: 2 ** 30, heartbeatMs: 60_000, idleMs: 60_000 }, staging: new FileTusStaging(d.blobs), expirySeconds: 3600 });
      const { id } = await d.images.create(P, { disk_format: 'raw', container_format: 'bare' });
      const data = image(MiB, 5);
      const upload = await uploads.create(P, id, data.length);
      const { body: slowBody, release } = heldBody(data);
      const patching = uploads.patch(P, id, upload.id, { offset: 0, body: slowBody, contentLength: data.length, checksum: null });
      await new Promise((r) => setTimeout(r, 50));
      const terminating = uploads.terminate(P, id, upload.id); // waits for the PATCH (one process)
      release();
      assert.equal((await patching).completed?.staging?.sha512, sha512(data));
      await assert.rejects(terminating, (e: Error & { code?: string }) => e.code === 'upload_not_found');
      const doc = (await d.manifest.get(id))!;
      assert.notEqual(doc.status, 'queued', 'the upload stands: the image went on to its import');
      assert.ok(doc.staging, 'its staged bytes are recorded for the import');
      assert.equal((await d.blobs.stat(doc.staging.key))?.size, data.length, 'and still there');
    } finally {
      await d.close();
    }
  });
});

/** A PATCH body that gives its first 256 KiB, then holds the rest until `release()`. */
function heldBody(data: Buffer): { body: NodeJS.ReadableStream; release: () => void } {
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  const body = (async function* () {
    yield data.subarray(0, 256 * 1024);
    await gate;
    yield data.subarray(256 * 1024);
  })() as unknown as NodeJS.ReadableStream;
  return { body, release };
}

function streamOf(buffer: Buffer): NodeJS.ReadableStream {
  return (async function* () {
    for (let i = 0; i < buffer.length; i += 256 * 1024) yield buffer.subarray(i, i + 256 * 1024);
  })() as unknown as NodeJS.ReadableStream;
}
