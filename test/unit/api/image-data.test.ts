import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { stagingPrefix } from '../../../core/blob-keys.js';
import { BlobStoreUnavailableError } from '../../../core/ports.js';
import { testApp, type TestApp } from './tenant-app.js';

const OCTETS = { 'content-type': 'application/octet-stream' };

describe('image data: PUT and GET /v2/images/{id}/file, PUT …/stage', () => {
  let t: TestApp;
  let id: string;
  const size = 64 * 1024;
  before(async () => {
    t = await testApp();
    id = await t.create('a-member');
    await t.activate('a-member', id, size);
  });
  after(async () => { await t.close(); });

  it('downloads whole (Content-MD5) and by range (206, also from the legacy request Content-Range), and refuses a bad range (416) or several (400)', async () => {
    const whole = await t.call('a-member', 'GET', `/v2/images/${id}/file`);
    assert.equal(whole.statusCode, 200);
    assert.equal(whole.rawPayload.length, size);
    assert.equal(whole.headers['content-md5'], createHash('md5').update(Buffer.alloc(size)).digest('hex'));
    const part = await t.call('a-member', 'GET', `/v2/images/${id}/file`, undefined, { range: 'bytes=10-19' });
    assert.equal(part.statusCode, 206);
    assert.equal(part.headers['content-range'], `bytes 10-19/${size}`);
    assert.equal(part.rawPayload.length, 10);
    for (const form of ['BYTES=10-19', 'bytes= 10-19']) {
      const same = await t.call('a-member', 'GET', `/v2/images/${id}/file`, undefined, { range: form });
      assert.equal(same.statusCode, 206, form);
      assert.equal(same.headers['content-range'], `bytes 10-19/${size}`);
    }
    const bad = await t.call('a-member', 'GET', `/v2/images/${id}/file`, undefined, { range: `bytes=${size}-` });
    assert.equal(bad.statusCode, 416);
    assert.equal(bad.json().error.error_code, 'bad_range');
    assert.equal(bad.headers['content-range'], `bytes */${size}`);
    const several = await t.call('a-member', 'GET', `/v2/images/${id}/file`, undefined, { range: 'bytes=0-1,5-6' });
    assert.equal(several.statusCode, 400, 'several ranges: 400, as Glance');
    assert.equal(several.json().error.error_code, 'multiple_ranges');
    // Glance's legacy form: a request Content-Range, read when there is no Range.
    const legacy = await t.call('a-member', 'GET', `/v2/images/${id}/file`, undefined, { 'content-range': `bytes 100-199/${size}` });
    assert.equal(legacy.statusCode, 206);
    assert.equal(legacy.headers['content-range'], `bytes 100-199/${size}`);
    assert.equal(legacy.rawPayload.length, 100);
    assert.equal((await t.call('a-member', 'GET', `/v2/images/${id}/file`, undefined, { 'content-range': `bytes 0-${size}/*` })).statusCode, 416);
  });

  it('refuses ?prefer= with one store (Glance: store selection needs multiple backends), and an empty prefer is no preference', async () => {
    const res = await t.call('a-member', 'GET', `/v2/images/${id}/file?prefer=local`);
    assert.equal(res.statusCode, 400);
    assert.equal(res.json().error.error_code, 'unknown_store');
    assert.equal((await t.call('a-member', 'GET', `/v2/images/${id}/file?prefer=`)).statusCode, 200);
  });

  it('answers 204 for an image without data, and 403 to readers (download needs the member role)', async () => {
    const empty = await t.create('a-member');
    assert.equal((await t.call('a-member', 'GET', `/v2/images/${empty}/file`)).statusCode, 204);
    assert.equal((await t.call('a-reader', 'GET', `/v2/images/${id}/file`)).statusCode, 403);
  });

  it('checks x-openstack-image-size, Content-Type and the upload policy', async () => {
    const img = await t.create('a-member');
    const mismatch = await t.call('a-member', 'PUT', `/v2/images/${img}/file`, Buffer.alloc(100), { ...OCTETS, 'x-openstack-image-size': '99' });
    assert.equal(mismatch.statusCode, 400);
    assert.equal(mismatch.json().error.error_code, 'size_mismatch');
    assert.equal((await t.call('a-member', 'GET', `/v2/images/${img}`)).json().status, 'queued');
    const wrongType = await t.call('a-member', 'PUT', `/v2/images/${img}/file`, 'abc', { 'content-type': 'text/plain' });
    assert.equal(wrongType.statusCode, 415);
    // A JSON body, valid or not, is refused unread (as Glance's deserializer), on both data routes.
    for (const [path, body] of [['file', '{"a": 1}'], ['file', Buffer.alloc(512)], ['stage', 'not json']] as const) {
      const json = await t.call('a-member', 'PUT', `/v2/images/${img}/${path}`, body, { 'content-type': 'application/json' });
      assert.equal(json.statusCode, 415, `${path}: ${json.body}`);
      assert.equal(json.json().error.error_code, 'bad_content_type');
    }
    assert.equal((await t.call('a-reader', 'PUT', `/v2/images/${img}/file`, Buffer.alloc(10), OCTETS)).statusCode, 403);
    assert.equal((await t.call('a-member', 'PUT', `/v2/images/${id}/file`, Buffer.alloc(10), OCTETS)).statusCode, 409); // already active
  });

  it('names the field a wrong upload digest came from (header or trailer), never an os_hash_value the client did not give', async () => {
    const bytes = Buffer.alloc(4096, 7);
    const wrong = createHash('sha512').update('other bytes').digest('base64');
    const refusal = (res: { statusCode: number; body: string; json(): any }) => {
      assert.equal(res.statusCode, 400, res.body);
      const { error_code, message } = res.json().error;
      assert.equal(error_code, 'checksum_mismatch');
      assert.doesNotMatch(message, /os_hash_value/);
      return message as string;
    };
    for (const [header, name] of [['repr-digest', 'Repr-Digest'], ['content-digest', 'Content-Digest']]) {
      const img = await t.create('a-member');
      const message = refusal(await t.call('a-member', 'PUT', `/v2/images/${img}/file`, bytes, { ...OCTETS, [header]: `sha-512=:${wrong}:` }));
      assert.match(message, new RegExp(`the ${name} header said ${Buffer.from(wrong, 'base64').toString('hex')}`));
    }
    const md5 = await t.create('a-member');
    assert.match(refusal(await t.call('a-member', 'PUT', `/v2/images/${md5}/file`, bytes, { ...OCTETS, 'content-md5': createHash('md5').update('other').digest('base64') })), /the Content-MD5 header said/);
    // Declared at create, the message still names os_hash_value.
    const declared = await t.create('a-member', { os_hash_algo: 'sha512', os_hash_value: 'ab'.repeat(64) });
    const atCreate = await t.call('a-member', 'PUT', `/v2/images/${declared}/file`, bytes, OCTETS);
    assert.match(atCreate.json().error.message, /os_hash_value given at create was/);
    // As a trailer of a chunked body (inject sends no trailers): a real socket.
    const url = await t.app.listen({ host: '127.0.0.1', port: 0 });
    const img = await t.create('a-member');
    const res = await new Promise<{ statusCode: number; body: string; json(): any }>((resolve, reject) => {
      const req = httpRequest(`${url}/v2/images/${img}/file`, { method: 'PUT', headers: { ...OCTETS, 'x-auth-token': 'a-member', trailer: 'Repr-Digest' } }, (r) => {
        let body = '';
        r.setEncoding('utf8').on('data', (c: string) => { body += c; }).on('end', () => resolve({ statusCode: r.statusCode!, body, json: () => JSON.parse(body) }));
      }).on('error', reject);
      req.write(bytes);
      req.addTrailers({ 'Repr-Digest': `sha-512=:${wrong}:` });
      req.end();
    });
    assert.match(refusal(res), /the Repr-Digest trailer said/);
  });

  it('refuses an empty body for a format with a header and keeps the image queued for the real upload; an empty raw disk goes active', async () => {
    // What the glance and openstack CLIs send from an empty, non-terminal stdin (scripts, CI).
    for (const kind of ['file', 'stage'] as const) {
      const img = await t.create('a-member', { disk_format: 'qcow2', container_format: 'bare' });
      const empty = await t.call('a-member', 'PUT', `/v2/images/${img}/${kind}`, Buffer.alloc(0), OCTETS);
      assert.equal(empty.statusCode, 415, kind);
      assert.equal(empty.json().error.error_code, 'empty_image');
      assert.match(empty.json().error.message, /0 bytes long, which no qcow2 image is.*back in queued/);
      const image = (await t.call('a-member', 'GET', `/v2/images/${img}`)).json();
      assert.deepEqual({ status: image.status, size: image.size, checksum: image.checksum }, { status: 'queued', size: null, checksum: null }, kind);
    }
    const raw = await t.create('a-member', { disk_format: 'raw', container_format: 'bare' });
    assert.equal((await t.call('a-member', 'PUT', `/v2/images/${raw}/file`, Buffer.alloc(0), OCTETS)).statusCode, 204);
    assert.deepEqual((({ status, size }) => ({ status, size }))((await t.call('a-member', 'GET', `/v2/images/${raw}`)).json()), { status: 'active', size: 0 });
  });

  it('answers 410 to an upload whose image was deleted while its bytes streamed in, and keeps none of them (Glance: HTTPGone)', async () => {
    for (const path of ['file', 'stage'] as const) {
      const img = await t.create('a-member');
      const body = new PassThrough();
      const put = t.app.inject({ method: 'PUT', url: `/v2/images/${img}/${path}`, headers: { 'x-auth-token': 'a-member', ...OCTETS }, payload: body });
      body.write(Buffer.alloc(64 * 1024));
      // The upload has claimed the image once it is 'uploading'; then the owner deletes it.
      for (let i = 0; i < 100 && (await t.call('a-member', 'GET', `/v2/images/${img}`)).json().status !== 'uploading'; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal((await t.call('a-member', 'DELETE', `/v2/images/${img}`)).statusCode, 204);
      body.end(Buffer.alloc(64 * 1024));
      const res = await put;
      assert.equal(res.statusCode, 410, `${path}: ${res.body}`);
      assert.equal(res.json().error.error_code, 'image_deleted');
      assert.match(res.json().error.message, /deleted while its data was arriving/);
      assert.deepEqual(await t.d.blobs.list(stagingPrefix(img)), [], path);
      assert.equal((await t.call('a-member', 'GET', `/v2/images/${img}`)).statusCode, 404);
    }
  });

  it('answers 410, not a store fault, when the delete made the store drop the upload under it (S3: the multipart upload aborted)', async () => {
    const img = await t.create('a-member');
    const blobs = t.d.blobs as unknown as { write: (key: string, source: AsyncIterable<Uint8Array>, ...rest: unknown[]) => Promise<unknown> };
    const write = blobs.write;
    // As S3 answers a part of an aborted multipart upload: NoSuchUpload, which the adapter reports as the store failing.
    blobs.write = function (this: unknown, key: string, source: AsyncIterable<Uint8Array>, ...rest: unknown[]) {
      async function* dropped(): AsyncGenerator<Uint8Array> {
        for await (const chunk of source) {
          yield chunk;
          if (key.includes(img)) {
            for (let i = 0; i < 200 && (await t.call('admin', 'GET', `/v2/images/${img}`)).statusCode !== 404; i++) await new Promise((r) => setTimeout(r, 10));
            throw new BlobStoreUnavailableError('NoSuchUpload: the specified multipart upload does not exist');
          }
        }
      }
      return write.call(this, key, dropped(), ...rest);
    };
    try {
      const body = new PassThrough();
      const put = t.app.inject({ method: 'PUT', url: `/v2/images/${img}/file`, headers: { 'x-auth-token': 'a-member', ...OCTETS }, payload: body });
      body.write(Buffer.alloc(64 * 1024));
      for (let i = 0; i < 100 && (await t.call('a-member', 'GET', `/v2/images/${img}`)).json().status !== 'saving'; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal((await t.call('a-member', 'DELETE', `/v2/images/${img}`)).statusCode, 204);
      body.end(Buffer.alloc(64 * 1024));
      const res = await put;
      assert.equal(res.statusCode, 410, res.body);
      assert.equal(res.json().error.error_code, 'image_deleted');
    } finally {
      blobs.write = write;
    }
  });

  it('refuses a second upload while one is under way (409) with the advice that fits: wait for a cut-off one to be given up, or make a new image', async () => {
    const img = await t.create('a-member');
    const body = new PassThrough();
    const first = t.app.inject({ method: 'PUT', url: `/v2/images/${img}/file`, headers: { 'x-auth-token': 'a-member', ...OCTETS }, payload: body });
    body.write(Buffer.alloc(64 * 1024));
    for (let i = 0; i < 100 && (await t.call('a-member', 'GET', `/v2/images/${img}`)).json().status !== 'saving'; i++) await new Promise((r) => setTimeout(r, 10));
    const busy = await t.call('a-member', 'PUT', `/v2/images/${img}/file`, Buffer.alloc(1024), OCTETS);
    assert.equal(busy.statusCode, 409);
    assert.match(busy.json().error.message, /is saving; .*once it has been silent for PIR_UPLOAD_STALL_SECONDS: upload again to this image then/);
    body.end(Buffer.alloc(64 * 1024));
    assert.equal((await first).statusCode, 204);
    const done = await t.call('a-member', 'PUT', `/v2/images/${img}/file`, Buffer.alloc(1024), OCTETS);
    assert.match(done.json().error.message, /is active; .*Create a new image to upload again/);
  });

  it('stages and imports with glance-direct', async () => {
    const img = await t.create('a-member');
    assert.equal((await t.call('a-member', 'PUT', `/v2/images/${img}/stage`, Buffer.alloc(4096), OCTETS)).statusCode, 204);
    // As Glance's stage(): the staged size shows while the image waits for its import.
    const staged = (await t.call('a-member', 'GET', `/v2/images/${img}`)).json();
    assert.deepEqual([staged.status, staged.size], ['uploading', 4096]);
    assert.equal((await t.call('a-member', 'POST', `/v2/images/${img}/import`, { method: { name: 'web-download-nope' } })).statusCode, 400);
    assert.equal((await t.call('a-member', 'POST', `/v2/images/${img}/import`, { method: { name: 'glance-direct' } })).statusCode, 202);
    let status = '';
    for (let i = 0; i < 100 && status !== 'active'; i++) {
      status = (await t.call('a-member', 'GET', `/v2/images/${img}`)).json().status;
      if (status !== 'active') await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(status, 'active');
  });
});
