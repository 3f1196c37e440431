/**
 * `pir serve` with PIR_TOKENS_FILE: a bad file stops start-up with a message naming the
 * problem; a good one grants its tokens, and an edit takes effect without a restart.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { makeTempDir, removeDir } from '../support/images.js';
import { freePort, startPirProcess, testLogDir, waitFor, type PirProcess } from '../support/pir-process.js';

const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../../cli/main.js', import.meta.url));
const ADMIN = 'e2e-tokens-admin-0123456789abcdefg';
const ALICE = 'e2e-tokens-alice-0123456789';
const BOB = 'e2e-tokens-bob-9876543210';
const tokens = (...entries: [string, string, string, string[]][]) =>
  JSON.stringify({ tokens: entries.map(([token, project_id, user_id, roles]) => ({ token, project_id, user_id, roles })) });

describe('pir serve with a tokens file', () => {
  let dir: string;
  let pir: PirProcess | null = null;
  before(async () => { dir = await makeTempDir('pir-e2e-tokens-'); });
  after(async () => {
    await pir?.stop();
    if (dir) await removeDir(dir);
  });

  it('refuses to start on a bad tokens file, naming the file and the problem', async () => {
    const file = join(dir, 'bad.json');
    await writeFile(file, tokens([ALICE, 'demo', 'alice', ['owner']]));
    const failed = await run(process.execPath, [CLI, 'serve'], {
      env: { PATH: process.env.PATH ?? '', PIR_DATA_DIR: join(dir, 'bad-data'), PIR_PORT: String(await freePort()), PIR_TOKENS_FILE: file },
    }).then(() => null, (error: { code: number; stderr: string }) => error);
    assert.ok(failed, 'pir serve started with a bad tokens file');
    assert.equal(failed.code, 2);
    assert.equal(failed.stderr.trim(), `pir: configuration error: PIR_TOKENS_FILE: ${file}: tokens[0].roles[0] is "owner"; a role is one of admin, member, reader, service`);
  });

  it('grants the file\'s tokens as their projects, and follows edits without a restart', async () => {
    const file = join(dir, 'tokens.json');
    await writeFile(file, tokens([ALICE, 'demo', 'alice', ['member']]));
    const port = await freePort();
    pir = await startPirProcess('serve', { PIR_DATA_DIR: join(dir, 'data'), PIR_PORT: String(port), PIR_ADMIN_TOKEN: ADMIN, PIR_TOKENS_FILE: file }, testLogDir('tokens-file'));
    const url = `http://127.0.0.1:${port}/v2/images`;
    const as = (token: string, init: RequestInit = {}) => fetch(url, { ...init, headers: { 'X-Auth-Token': token, 'Content-Type': 'application/json', ...init.headers as Record<string, string> } });

    const created = await as(ALICE, { method: 'POST', body: JSON.stringify({ name: 'alice-image', disk_format: 'raw', container_format: 'bare' }) });
    assert.equal(created.status, 201);
    assert.equal((await created.json() as { owner: string }).owner, 'demo');
    assert.equal((await as(ADMIN)).status, 200);
    assert.equal((await as(BOB)).status, 401);

    // Saved as editors do (new file renamed over the old): bob in, alice out.
    await writeFile(join(dir, 'tokens.json.new'), tokens([BOB, 'other', 'bob', ['reader']]));
    await rename(join(dir, 'tokens.json.new'), file);
    await waitFor(async () => (await as(BOB)).status === 200, 10_000, 'bob\'s token to be accepted');
    assert.equal((await as(ALICE)).status, 401);
    assert.equal((await as(ADMIN)).status, 200);
    // A broken edit keeps the last good set, and says so in the log.
    await writeFile(file, '{"tokens": [');
    await waitFor(() => pir!.output().includes('refused the changed file'), 10_000, 'the bad edit to be logged');
    assert.equal((await as(BOB)).status, 200);
    assert.doesNotMatch(pir.output(), new RegExp(`${ALICE}|${BOB}|${ADMIN}`), 'a token appears in the log');
  });
});
