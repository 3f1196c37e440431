/**
 * The real `glance` CLI (Debian's python3-glanceclient) against `pir serve`: create with a
 * file, create via glance-direct import, show, list, download, delete, and a refused image.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ensureQemuImg, makeImage, makeTempDir, removeDir } from '../support/images.js';
import { fileDigests } from '../support/pir-client.js';
import { freePort, startPirProcess, testLogDir, type PirProcess } from '../support/pir-process.js';
import { inCI } from '../support/services.js';

const run = promisify(execFile);
const TOKEN = 'e2e-glance-cli-token-0123456789abcd';
const logDir = testLogDir('glance-cli');
const haveGlance = await run('glance', ['--version']).then(() => true, () => false);
if (!haveGlance && !inCI) console.log('# glance CLI e2e skipped: no `glance` command; install it with bash infra/local/services.sh install tools');

describe('the glance CLI against pir serve', { skip: !haveGlance && !inCI ? 'no glance command (python3-glanceclient)' : false }, () => {
  let dir: string;
  let pir: PirProcess;
  let glance: (...args: string[]) => Promise<string>;

  before(async () => {
    if (!haveGlance) throw new Error('CI is set but the glance command is missing: bash infra/local/services.sh install tools');
    ensureQemuImg();
    dir = await makeTempDir('pir-e2e-glance-');
    const port = await freePort();
    pir = await startPirProcess('serve', { PIR_DATA_DIR: join(dir, 'data'), PIR_PORT: String(port), PIR_ADMIN_TOKEN: TOKEN }, logDir);
    const home = join(dir, 'home'); // the CLI caches the image schema under ~/.glanceclient
    await mkdir(home);
    glance = async (...args: string[]) => {
      // stdin closed (<&-): with --file, the CLI refuses a stdin that is not a terminal.
      const { stdout } = await run('bash', ['-c', 'exec glance "$@" <&-', 'glance', '--os-image-url', `http://127.0.0.1:${port}`, '--os-auth-token', TOKEN, ...args], {
        env: { PATH: process.env.PATH ?? '', HOME: home },
      });
      return stdout;
    };
  });
  after(async () => {
    await pir?.stop();
    if (dir) await removeDir(dir);
  });

  /** Reads a field from the CLI's two-column table. */
  const field = (table: string, name: string) => new RegExp(`^\\|\\s*${name}\\s*\\|\\s*(.*?)\\s*\\|$`, 'm').exec(table)?.[1];

  it('uploads a qcow2 with image-create --file, shows it active, lists and downloads it', async () => {
    const disk = await makeImage(dir, 'qcow2', { size: '2G' });
    const digests = await fileDigests(disk);
    const created = await glance('image-create', '--name', 'cli-qcow2', '--disk-format', 'qcow2', '--container-format', 'bare', '--file', disk);
    const id = field(created, 'id')!;
    assert.match(id, /^[0-9a-f-]{36}$/);
    const shown = await glance('image-show', id);
    assert.equal(field(shown, 'status'), 'active');
    assert.equal(field(shown, 'checksum'), digests.md5);
    assert.equal(field(shown, 'virtual_size'), String(2 * 2 ** 30));
    assert.equal(field(shown, 'os_hash_algo'), 'sha512');
    assert.match(await glance('image-list'), new RegExp(id));
    const out = join(dir, 'downloaded.qcow2');
    await glance('image-download', '--file', out, id); // the CLI checks Content-MD5 itself
    assert.deepEqual(await fileDigests(out), digests);
    await glance('image-delete', id);
    await assert.rejects(glance('image-show', id), /not found/i);
  });

  it('imports with image-create-via-import (glance-direct)', async () => {
    const disk = await makeImage(dir, 'raw', { size: '8M' });
    const created = await glance('image-create-via-import', '--name', 'cli-import', '--disk-format', 'raw', '--container-format', 'bare', '--import-method', 'glance-direct', '--file', disk);
    const id = field(created, 'id')!;
    let status = '';
    for (let i = 0; i < 100 && status !== 'active'; i++) {
      status = field(await glance('image-show', id), 'status') ?? '';
      if (status !== 'active') await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(status, 'active');
  });

  it('shows the reason when an image is refused', async () => {
    const evil = await makeImage(dir, 'qcow2', { backing: '/etc/passwd', backingFormat: 'raw', unsafe: true, size: '1G' });
    await assert.rejects(
      glance('image-create', '--name', 'cli-evil', '--disk-format', 'qcow2', '--container-format', 'bare', '--file', evil),
      (error: Error & { stderr?: string }) => /backing file/.test(String(error.stderr)),
    );
  });
});
