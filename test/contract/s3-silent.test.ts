/**
 * An S3 server that goes silent (a network that drops packets without a reset) fails the S3
 * store's reads and writes as unreachable after PIR_S3_TIMEOUT_SECONDS of silence per attempt,
 * instead of holding them for good. The real store against SeaweedFS through a TCP forwarder that
 * stops forwarding.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { S3BlobStore } from '../../infra/storage/s3-blob-store.js';
import { isUnreachable } from '../../infra/unreachable.js';
import { tcpForwarder } from '../support/tcp-forwarder.js';
import { requireServices, services, uniqueName } from '../support/services.js';
import { within } from '../support/within.js';

test('a silent S3 server fails reads and writes as unreachable after the timeout, not never', { timeout: 90_000 }, async (t) => {
  if (!(await requireServices(t, ['s3']))) return;
  const target = new URL(services.s3.endpoint);
  const forwarder = await tcpForwarder({ host: target.hostname, port: Number(target.port || 80) }, { open: true });
  const prefix = `${uniqueName('silent')}/`;
  // 1 s of silence per attempt; the SDK makes three attempts.
  const store = new S3BlobStore({ ...services.s3, endpoint: `http://127.0.0.1:${forwarder.port}`, prefix, timeoutMs: 1000 });
  const direct = new S3BlobStore({ ...services.s3, prefix });
  try {
    await store.write('staging/kept', Readable.from([randomBytes(1024)]), { maxBytes: 1 << 20 });
    forwarder.stall();

    const read = await within(store.read('staging/kept').then(async (stream) => { for await (const chunk of stream) void chunk; }), 20_000);
    assert.notEqual(read, 'still waiting', 'a read from the silent server still waited after 20 s');
    assert.ok(read !== 'still waiting' && read.error !== undefined, 'the read failed');
    assert.ok(isUnreachable((read as { error: unknown }).error), `the read failed as unreachable (503): ${String((read as { error: unknown }).error)}`);

    const written = await within(store.write('staging/new', Readable.from([randomBytes(64 * 1024)]), { maxBytes: 1 << 20 }), 20_000);
    assert.notEqual(written, 'still waiting', 'a write to the silent server still waited after 20 s');
    assert.ok(written !== 'still waiting' && written.error !== undefined, 'the write failed');
    assert.ok(isUnreachable((written as { error: unknown }).error), `the write failed as unreachable (503): ${String((written as { error: unknown }).error)}`);
  } finally {
    store.close();
    await forwarder.close();
    for (const blob of await direct.list('')) await direct.delete(blob.key);
    direct.close();
  }
});
