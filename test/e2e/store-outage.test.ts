/**
 * The image store (the real SeaweedFS) unreachable while an import runs: `pir serve` on S3 reaches
 * the bucket through a TCP forwarder the test cuts after the bytes are staged. The import's
 * stage runs out of attempts within seconds; the image must wait for the store (still importing,
 * no failure), and turn active with the right digests once the store answers again, instead of
 * ending killed with the staged bytes thrown away.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { serveOnS3BehindProxy, type ServeOnS3 } from '../support/s3-serve.js';
import { inCI, serviceUp, services } from '../support/services.js';
import { tcpForwarder, type TcpForwarder } from '../support/tcp-forwarder.js';

const TOKEN = 'e2e-store-outage-token-0123456789abcd';
const MiB = 1024 * 1024;
const s3 = await serviceUp('s3');
if (!s3.up && !inCI) console.log(`# store outage e2e skipped: s3 not running (${s3.where}); bash infra/local/services.sh start s3`);

describe('pir serve on S3: an import waits for an unreachable store', { skip: !s3.up && !inCI ? 's3 not running' : false }, () => {
  let forwarder: TcpForwarder;
  let s3serve: ServeOnS3;

  before(async () => {
    if (!s3.up) throw new Error(`CI is set but s3 is not running (${s3.where}): bash infra/local/services.sh start s3`);
    const target = new URL(services.s3.endpoint);
    forwarder = await tcpForwarder({ host: target.hostname, port: Number(target.port) }, { open: true });
    // Two attempts 100 ms apart: the attempts are used up within a second of the cut.
    s3serve = await serveOnS3BehindProxy({
      name: 'store-outage', token: TOKEN, endpoint: () => `http://127.0.0.1:${forwarder.port}`,
      env: { PIR_STAGE_ATTEMPTS: '2', PIR_STAGE_BACKOFF_MS: '100' },
    });
  });

  after(async () => {
    forwarder?.open();
    await s3serve?.close();
    await forwarder?.close();
  });

  it('a glance-direct import started while the store is cut stays importing, then turns active once it is back', { timeout: 120_000 }, async () => {
    const { client, dir } = s3serve;
    const bytes = randomBytes(4 * MiB);
    const path = join(dir, 'disk.raw');
    await writeFile(path, bytes);
    const image = await client.createImage({ name: 'outage', disk_format: 'raw', container_format: 'bare' });
    const staged = await client.putData(image.id, path, 'stage');
    assert.equal(staged.status, 204, JSON.stringify(staged.body));

    forwarder.cut();
    const started = await client.call('POST', `/v2/images/${image.id}/import`, { method: { name: 'glance-direct' } });
    assert.equal(started.status, 202, JSON.stringify(started.body));
    // Several times the attempts' span, and past the first wait (5 s): without the wait the
    // image would be killed by now.
    await new Promise((r) => setTimeout(r, 8000));
    const waiting = (await client.getImage(image.id)).body;
    assert.equal(waiting.status, 'importing', JSON.stringify(waiting.pir_failure ?? waiting));
    assert.equal(waiting.pir_failure ?? null, null);

    forwarder.open();
    const done = await client.waitSettled(image.id, 60_000);
    assert.equal(done.status, 'active', JSON.stringify(done.pir_failure ?? done));
    assert.equal(done.checksum, createHash('md5').update(bytes).digest('hex'));
    assert.equal(done.os_hash_value, createHash('sha512').update(bytes).digest('hex'));
    const download = await client.downloadDigests(image.id);
    assert.equal(download.sha512, done.os_hash_value);
  });
});
