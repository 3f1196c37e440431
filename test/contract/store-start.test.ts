/**
 * Opening the stores at start: a wrong bucket or refused credentials stop start-up with a
 * configuration error naming the setting (not an SDK stack trace from the first listing); two
 * filesystem stores that are one directory through a link are refused; a store directory that
 * cannot hold its subdirectories is named. The S3 cases against the real SeaweedFS.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../infra/config.js';
import { DEFAULT_EGRESS } from '../../infra/egress/egress-client.js';
import { openBlobStore } from '../../infra/storage/open-blob-store.js';
import { HashPool } from '../../ingest/hashing/index.js';
import { requireServices, services } from '../support/services.js';

const egress = DEFAULT_EGRESS;
const refusedAs = (variable: string, pattern: RegExp) => (error: unknown) =>
  error instanceof ConfigError && error.message.startsWith(`${variable}:`) && pattern.test(error.message);

test('filesystem stores: one directory through a link, and a directory that cannot hold a store, are configuration errors', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'pir-store-start-'));
  try {
    await mkdir(join(dir, 'x'));
    await symlink(join(dir, 'x'), join(dir, 'link'));
    const stores = (b: string) => ({ stores: [{ id: 'a', kind: 'fs' as const, dir: join(dir, 'x') }, { id: 'b', kind: 'fs' as const, dir: join(dir, b) }], defaultStore: 'a' });
    await assert.rejects(openBlobStore({ dataDir: dir, s3: null, egress, stores: stores('link') }, HashPool.shared()), refusedAs('PIR_STORES', /"a" and "b" are the same directory/));
    await mkdir(join(dir, 'bad'));
    await writeFile(join(dir, 'bad', 'images'), 'not a directory');
    await assert.rejects(openBlobStore({ dataDir: dir, s3: null, egress, stores: stores('bad') }, HashPool.shared()), refusedAs('PIR_STORES', /bad cannot hold images and staging/));
    const fine = await openBlobStore({ dataDir: dir, s3: null, egress, stores: stores('y') }, HashPool.shared());
    fine.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('an S3 store with a wrong bucket or refused credentials stops start-up naming the setting', { timeout: 60_000 }, async (t) => {
  if (!(await requireServices(t, ['s3']))) return;
  const dir = await mkdtemp(join(tmpdir(), 'pir-store-start-'));
  try {
    const open = (s3: typeof services.s3) => openBlobStore({ dataDir: dir, s3: { ...s3, prefix: '' } as never, egress }, HashPool.shared());
    await assert.rejects(open({ ...services.s3, bucket: 'pir-no-such-bucket-here' }), refusedAs('PIR_S3_BUCKET', /"pir-no-such-bucket-here" does not exist at http/));
    await assert.rejects(open({ ...services.s3, secretAccessKey: 'not-the-secret' }), refusedAs('PIR_S3_ACCESS_KEY_ID', /refused PIR's credentials/));
    const fine = await open(services.s3);
    fine.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
