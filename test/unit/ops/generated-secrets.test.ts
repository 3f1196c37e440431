/**
 * The secrets PIR generates into its data dir on first start (admin token, webhook secret key),
 * with several processes starting at the same moment: every one must read the same whole value
 * (CI once saw a worker read the webhook key while another process was still writing it).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { resolveAdminToken } from '../../../infra/admin-token.js';
import { createFileOnce } from '../../../infra/create-file-once.js';
import { resolveWebhookKey } from '../../../infra/webhooks.js';
import { makeTempDir, removeDir } from '../../support/images.js';

const run = promisify(execFile);

describe('generated secrets in the data dir', () => {
  it('createFileOnce: one caller creates the file, the others find it whole, and no temporary file is left', async () => {
    const dir = await makeTempDir('pir-once-');
    try {
      const path = join(dir, 'secret');
      const created = await Promise.all(Array.from({ length: 40 }, (_, i) => createFileOnce(path, `value ${i}\n`)));
      assert.equal(created.filter(Boolean).length, 1);
      assert.deepEqual(await readdir(dir), ['secret']);
      assert.equal((await stat(path)).mode & 0o777, 0o600);
      assert.equal(await createFileOnce(path, 'another\n'), false, 'an existing file is kept');
    } finally {
      await removeDir(dir);
    }
  });

  it('createFileOnce: a reader polling the name never sees part of the content (32 MiB written)', async () => {
    // A large content widens the window in which `writeFile(…, { flag: 'wx' })` showed a partial
    // file (measured: 7 of 7 reads partial); a secret's few bytes made the same window rare.
    const dir = await makeTempDir('pir-once-');
    try {
      const path = join(dir, 'big');
      const content = 'x'.repeat(32 << 20);
      let done = false;
      const creating = createFileOnce(path, content).then(() => { done = true; });
      const partial: number[] = [];
      while (!done) {
        const read = await readFile(path, 'utf8').catch((error: NodeJS.ErrnoException) => {
          if (error.code === 'ENOENT') return null;
          throw error;
        });
        if (read === null) continue;
        if (read.length !== content.length) partial.push(read.length);
      }
      await creating;
      assert.deepEqual(partial, [], 'lengths of partial reads');
      assert.equal((await readFile(path, 'utf8')).length, content.length);
    } finally {
      await removeDir(dir);
    }
  });

  it('40 concurrent starts on a fresh data dir agree on one admin token and one webhook key', async () => {
    for (let round = 0; round < 5; round++) {
      const dir = await makeTempDir('pir-secrets-');
      try {
        const [tokens, keys] = await Promise.all([
          Promise.all(Array.from({ length: 40 }, () => resolveAdminToken(null, dir))),
          Promise.all(Array.from({ length: 40 }, () => resolveWebhookKey(null, dir))),
        ]);
        assert.equal(new Set(tokens.map((t) => t.token)).size, 1, `round ${round}: one admin token`);
        assert.equal(tokens.filter((t) => t.generated).length, 1, `round ${round}: generated once`);
        // 48 hex digits: never a leading '-' that a CLI would take for an option.
        assert.match(tokens[0]!.token, /^[0-9a-f]{48}$/);
        assert.equal(new Set(keys.map((k) => k.toString('hex'))).size, 1, `round ${round}: one webhook key`);
        assert.equal(keys[0]!.length, 32);
      } finally {
        await removeDir(dir);
      }
    }
  });

  it('four processes starting together on a fresh data dir read the same webhook key', async () => {
    const scripts = await makeTempDir('pir-secrets-script-');
    const script = join(scripts, 'print-webhook-key.mjs');
    const module = new URL('../../../infra/webhooks.js', import.meta.url).href;
    await writeFile(script, `const { resolveWebhookKey } = await import(${JSON.stringify(module)});\nprocess.stdout.write((await resolveWebhookKey(null, process.argv[2])).toString('hex'));\n`);
    try {
      for (let round = 0; round < 3; round++) {
        const dir = await makeTempDir('pir-secrets-');
        try {
          const outputs = await Promise.all(Array.from({ length: 4 }, () => run(process.execPath, [script, dir])));
          const keys = new Set(outputs.map((o) => o.stdout));
          assert.equal(keys.size, 1, `round ${round}: ${[...keys].join(' / ')}`);
          assert.match([...keys][0]!, /^[0-9a-f]{64}$/);
        } finally {
          await removeDir(dir);
        }
      }
    } finally {
      await removeDir(scripts);
    }
  });
});
