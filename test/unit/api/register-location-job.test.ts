/**
 * The register-location job (ingest/register-location.ts) as a worker runs it: the job carries
 * the caller who added the location, and a service user (the service role alone, no reader role:
 * Glance's add_image_location) must see its registration through to `active` like an owner's.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_LOCATION_SETTINGS } from '../../../core/external-location.js';
import { REGISTER_LOCATION_KIND, LocationRegistrations, type RegisterLocationJob } from '../../../ingest/register-location.js';
import { parseAllowList } from '../../../infra/egress/address-policy.js';
import { DEFAULT_EGRESS, EgressClient } from '../../../infra/egress/egress-client.js';
import { LocationReader } from '../../../infra/storage/location-reader.js';
import { silent } from '../core/fixtures.js';
import { startRangeServer, type RangeServer } from '../../support/range-server.js';
import { CALLERS, testApp, type TestApp } from './tenant-app.js';

describe('register-location job', () => {
  let t: TestApp;
  let server: RangeServer;
  before(async () => { t = await testApp(); server = await startRangeServer(); });
  after(async () => { await server.close(); await t.close(); });

  for (const who of ['a-member', 'a-service'] as const) {
    it(`runs a registration added by ${who} into the pipeline (the job reads the image as the system, not as its caller)`, async () => {
      const data = Buffer.alloc(64 * 1024, 7);
      const path = `/${who}.raw`;
      server.objects.set(path, { data });
      const egress = new EgressClient({ ...DEFAULT_EGRESS, allowList: parseAllowList(new URL(server.base).host) });
      const jobs: RegisterLocationJob[] = [];
      const queue = { enqueue: async (kind: { name: string }, _id: string, job: RegisterLocationJob) => { assert.equal(kind.name, REGISTER_LOCATION_KIND.name); jobs.push(job); } };
      const registrations = new LocationRegistrations({
        images: t.d.images, reader: new LocationReader(egress, null), egress, log: silent, queue: queue as never,
        upload: { maxImageSize: 2 ** 30, heartbeatMs: 60_000, idleMs: 60_000 },
        settings: { ...DEFAULT_LOCATION_SETTINGS, showLocations: true },
      });
      const id = await t.create('a-member');
      await registrations.start(CALLERS[who]!, id, { url: `${server.base}${path}` });
      assert.equal(jobs.length, 1);
      assert.deepEqual(jobs[0]!.caller.roles, CALLERS[who]!.roles);
      await registrations.handle(jobs[0]!);
      assert.ok((server.sent.get(path) ?? 0) >= data.length, 'the location was read');
      // Registered: the pipeline took over the location's bytes (this test app's stages cannot
      // read locations; the runtime's can: test/e2e/register-location.test.ts runs them to active).
      const doc = (await t.d.manifest.get(id))!;
      assert.equal(doc.pipeline?.method, 'location', `status ${doc.status}`);
      assert.deepEqual([doc.staging?.size, doc.staging?.md5], [data.length, createHash('md5').update(data).digest('hex')], 'the digests of the one read');
      await registrations.close();
    });
  }
});
