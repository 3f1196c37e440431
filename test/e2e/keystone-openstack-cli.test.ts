/**
 * The real `openstack` CLI (Debian's python3-openstackclient; and `glance` once) logging in to the real local
 * Keystone with a username and password, finding `pir serve` through Keystone's catalog, and
 * PIR validating every token with Keystone: create --file, list, show, delete; another
 * project cannot see a private image; a bad token is a 401 with Keystone's challenge.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { makeTempDir, removeDir } from '../support/images.js';
import { catalogRegionFor, issueToken, KEYSTONE } from '../support/keystone.js';
import { freePort, startPirProcess, testLogDir, type PirProcess } from '../support/pir-process.js';
import { inCI, serviceUp, uniqueName } from '../support/services.js';

const run = promisify(execFile);
const logDir = testLogDir('keystone-openstack-cli');
const haveOpenstack = await run('openstack', ['--version']).then(() => true, () => false);
const keystoneUp = (await serviceUp('keystone')).up;
const missing = [!haveOpenstack && 'no `openstack` command (python3-openstackclient)', !keystoneUp && `Keystone is not running at ${KEYSTONE}`].filter(Boolean).join('; ');
const START = 'bash infra/local/services.sh install keystone && bash infra/local/services.sh start keystone';
if (missing && !inCI) console.log(`# openstack CLI + Keystone e2e skipped: ${missing}: ${START}`);

describe('the openstack CLI through Keystone against pir serve', { skip: missing && !inCI ? missing : false }, () => {
  let dir: string;
  let pir: PirProcess;
  let pirUrl: string;
  let catalog: { region: string; remove(): Promise<void> } | null = null;
  /** Runs `openstack` or `glance` as a seeded user of the local Keystone, in a fresh HOME. */
  let cli: (command: 'openstack' | 'glance', user: string, project: string, ...args: string[]) => Promise<string>;
  const openstack = (user: string, project: string, ...args: string[]) => cli('openstack', user, project, ...args);

  before(async () => {
    if (missing) throw new Error(`CI is set but ${missing}: ${START}`);
    dir = await makeTempDir('pir-e2e-keystone-');
    const port = await freePort();
    pir = await startPirProcess('serve', {
      PIR_DATA_DIR: join(dir, 'data'), PIR_PORT: String(port),
      PIR_KEYSTONE_URL: KEYSTONE, PIR_KEYSTONE_USERNAME: 'pir', PIR_KEYSTONE_PASSWORD: 'pir-pass', PIR_KEYSTONE_PROJECT: 'service',
    }, logDir);
    pirUrl = `http://127.0.0.1:${port}`;
    // The catalog gives this PIR as the image service of a region of this run's own.
    catalog = await catalogRegionFor(pirUrl, uniqueName('pir-e2e'));
    cli = async (command, user, project, ...args) => {
      const home = await mkdtemp(join(dir, 'home-'));
      const { stdout } = await run('bash', ['-c', 'exec "$@" <&-', 'cli', command, ...args], {
        env: {
          PATH: process.env.PATH ?? '', HOME: home,
          OS_AUTH_URL: KEYSTONE, OS_IDENTITY_API_VERSION: '3', OS_REGION_NAME: catalog!.region,
          OS_USER_DOMAIN_NAME: 'Default', OS_PROJECT_DOMAIN_NAME: 'Default',
          OS_USERNAME: user, OS_PASSWORD: `${user}-pass`, OS_PROJECT_NAME: project,
        },
      });
      return stdout;
    };
  });
  after(async () => {
    try {
      await catalog?.remove();
    } finally {
      await pir?.stop();
      if (dir) await removeDir(dir);
    }
  });

  const json = (text: string) => JSON.parse(text) as Record<string, any>;

  it('logs in with a password, finds PIR in the catalog, and creates, lists, shows and deletes an image', async () => {
    const disk = join(dir, 'disk.raw');
    await writeFile(disk, Buffer.alloc(3 * 2 ** 20, 'pir'));
    const md5 = await new Promise<string>((resolve, reject) => {
      const hash = createHash('md5');
      createReadStream(disk).on('data', (c) => hash.update(c)).on('end', () => resolve(hash.digest('hex'))).on('error', reject);
    });
    const demo = await issueToken('demo', 'demo');
    const created = json(await openstack('demo', 'demo', 'image', 'create', '--file', disk, '--disk-format', 'raw', '--container-format', 'bare', '--private', 'e2e-keystone', '-f', 'json'));
    assert.match(created.id, /^[0-9a-f-]{36}$/);
    assert.equal(created.owner, demo.projectId, 'the image belongs to the project Keystone named');
    const shown = json(await openstack('demo', 'demo', 'image', 'show', created.id, '-f', 'json'));
    assert.equal(shown.status, 'active');
    assert.equal(shown.checksum, md5);
    assert.equal(shown.visibility, 'private');
    const listed = JSON.parse(await openstack('demo', 'demo', 'image', 'list', '-f', 'json')) as { ID: string }[];
    assert.ok(listed.some((i) => i.ID === created.id));
    // The glance CLI finds PIR the same way (OS_* variables, Keystone's catalog).
    assert.match(await cli('glance', 'demo', 'demo', 'image-list'), new RegExp(created.id));
    await openstack('demo', 'demo', 'image', 'delete', created.id);
    await assert.rejects(openstack('demo', 'demo', 'image', 'show', created.id), /No Image found|not found|404/i);

    // Every authenticated request was logged with the caller's project and user (only the
    // version documents are served without a token), and no token was logged.
    const lines = pir.output().split('\n').filter((l) => l.includes('"request completed"') && l.includes('"project_id"'));
    assert.ok(lines.length >= 5, `request lines with a caller: ${lines.length}`);
    assert.ok(lines.every((l) => l.includes(`"project_id":"${demo.projectId}"`) && l.includes(`"user_id":"${demo.userId}"`)));
    assert.doesNotMatch(pir.output(), /gAAAAA/, 'a Fernet token appears in PIR\'s log');
  });

  it('refuses a missing or bad token with 401, Glance\'s body and Keystone\'s challenge', async () => {
    for (const headers of [{}, { 'X-Auth-Token': 'gAAAAABbogus' }] as Record<string, string>[]) {
      const response = await fetch(`${pirUrl}/v2/images`, { headers });
      assert.equal(response.status, 401);
      assert.equal(response.headers.get('www-authenticate'), `Keystone uri='${KEYSTONE}'`);
      const body = await response.json() as { error: { code: number; title: string; message: string } };
      assert.equal(body.error.code, 401);
      assert.equal(body.error.title, 'Unauthorized');
      assert.ok(body.error.message.length > 0);
    }
    // A real token, revoked by Keystone, is no longer accepted either (not cached in PIR yet).
    const stale = await issueToken('demo', 'demo');
    await fetch(`${KEYSTONE}/auth/tokens`, { method: 'DELETE', headers: { 'X-Auth-Token': stale.token, 'X-Subject-Token': stale.token } });
    assert.equal((await fetch(`${pirUrl}/v2/images`, { headers: { 'X-Auth-Token': stale.token } })).status, 401);
  });

  it('answers 503 with a clear message, not 401, while Keystone is unreachable', async () => {
    const port = await freePort();
    const deadKeystone = `http://127.0.0.1:${await freePort()}/v3`;
    const lonely = await startPirProcess('serve', {
      PIR_DATA_DIR: join(dir, 'data-lonely'), PIR_PORT: String(port),
      PIR_KEYSTONE_URL: deadKeystone, PIR_KEYSTONE_USERNAME: 'pir', PIR_KEYSTONE_PASSWORD: 'pir-pass',
    }, logDir, 'serve-no-keystone');
    try {
      const demo = await issueToken('demo', 'demo');
      const response = await fetch(`http://127.0.0.1:${port}/v2/images`, { headers: { 'X-Auth-Token': demo.token } });
      assert.equal(response.status, 503);
      assert.equal(response.headers.get('www-authenticate'), null);
      const body = await response.json() as { error: { code: number; message: string; error_code: string } };
      assert.equal(body.error.error_code, 'identity_unavailable');
      assert.ok(body.error.message.startsWith(`Keystone at ${deadKeystone} is unreachable (ECONNREFUSED)`), body.error.message);
    } finally {
      await lonely.stop();
    }
  });

  it('does not show one project\'s private image to another project', async () => {
    const disk = join(dir, 'private.raw');
    await writeFile(disk, Buffer.alloc(2 ** 20, 'x'));
    const created = json(await openstack('demo', 'demo', 'image', 'create', '--file', disk, '--disk-format', 'raw', '--container-format', 'bare', '--private', 'e2e-private', '-f', 'json'));
    try {
      const seen = JSON.parse(await openstack('other', 'other', 'image', 'list', '-f', 'json')) as { ID: string }[];
      assert.ok(!seen.some((i) => i.ID === created.id), 'project other lists demo\'s private image');
      await assert.rejects(openstack('other', 'other', 'image', 'show', created.id), /No Image found|not found|404/i);
      await assert.rejects(openstack('other', 'other', 'image', 'delete', created.id));
      assert.equal(json(await openstack('demo', 'demo', 'image', 'show', created.id, '-f', 'json')).status, 'active');
    } finally {
      await openstack('demo', 'demo', 'image', 'delete', created.id).catch(() => {});
    }
  });
});
