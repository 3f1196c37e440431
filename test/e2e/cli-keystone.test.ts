/**
 * The `pir` command logging in to the real local Keystone (infra/local/keystone.sh): password
 * login, PIR's address from the catalog (a region of this run's own), the token's project as
 * the image owner, and a refused login as exit 5.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeTempDir, removeDir } from '../support/images.js';
import { catalogRegionFor, issueToken, KEYSTONE } from '../support/keystone.js';
import { runCli } from '../support/pir-cli.js';
import { freePort, startPirProcess, testLogDir, type PirProcess } from '../support/pir-process.js';
import { inCI, serviceUp, uniqueName } from '../support/services.js';

const logDir = testLogDir('cli-keystone');
const keystoneUp = (await serviceUp('keystone')).up;
const START = 'bash infra/local/services.sh install keystone && bash infra/local/services.sh start keystone';
if (!keystoneUp && !inCI) console.log(`# pir command + Keystone e2e skipped: Keystone is not running at ${KEYSTONE}: ${START}`);

describe('the pir command through Keystone against pir serve', { skip: !keystoneUp && !inCI ? 'Keystone is not running' : false }, () => {
  let dir: string;
  let pir: PirProcess;
  let catalog: { region: string; remove(): Promise<void> } | null = null;
  let env: (password: string) => Record<string, string>;

  before(async () => {
    if (!keystoneUp) throw new Error(`CI is set but Keystone is not running at ${KEYSTONE}: ${START}`);
    dir = await makeTempDir('pir-e2e-cli-keystone-');
    const port = await freePort();
    pir = await startPirProcess('serve', {
      PIR_DATA_DIR: join(dir, 'data'), PIR_PORT: String(port),
      PIR_KEYSTONE_URL: KEYSTONE, PIR_KEYSTONE_USERNAME: 'pir', PIR_KEYSTONE_PASSWORD: 'pir-pass', PIR_KEYSTONE_PROJECT: 'service',
    }, logDir, 'cli-keystone-serve');
    catalog = await catalogRegionFor(`http://127.0.0.1:${port}`, uniqueName('pir-cli'));
    env = (password) => ({
      HOME: dir, OS_AUTH_URL: KEYSTONE, OS_REGION_NAME: catalog!.region, OS_USERNAME: 'demo', OS_PASSWORD: password, OS_PROJECT_NAME: 'demo',
    });
  });
  after(async () => {
    try {
      await catalog?.remove();
    } finally {
      await pir?.stop();
      if (dir) await removeDir(dir);
    }
  });

  it('logs in with OS_* variables, finds PIR in the catalog, and the image belongs to the token\'s project', async () => {
    const disk = join(dir, 'disk.raw');
    await writeFile(disk, randomBytes(2 * 2 ** 20));
    const created = await runCli(['image', 'create', '--name', 'ks', '--disk-format', 'raw', '--file', disk, '--wait', '--format', 'json'], env('demo-pass'));
    assert.equal(created.code, 0, created.stderr);
    const image = JSON.parse(created.stdout);
    assert.equal(image.status, 'active');
    assert.equal(image.owner, (await issueToken('demo', 'demo')).projectId);
    const listed = await runCli(['image', 'list', '--format', 'json', '--os-username', 'demo', '--os-password', 'demo-pass'], { ...env('ignored'), OS_USERNAME: 'nobody' });
    assert.equal(listed.code, 0, listed.stderr); // flags win over OS_* variables
    assert.ok((JSON.parse(listed.stdout) as { id: string }[]).some((i) => i.id === image.id));
  });

  it('a wrong password is exit 5 with what to check', async () => {
    const refused = await runCli(['image', 'list'], env('wrong'));
    assert.equal(refused.code, 5, refused.stderr);
    assert.match(refused.stderr, /Keystone at .* refused the login for user 'demo': check --os-username, --os-password/);
  });

  it('a region without PIR in the catalog says to give --url', async () => {
    const r = await runCli(['image', 'list'], { ...env('demo-pass'), OS_REGION_NAME: 'no-such-region' });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no public endpoint of type 'image' in region no-such-region; give PIR's address with --url/);
  });
});
