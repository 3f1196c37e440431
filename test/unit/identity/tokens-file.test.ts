import assert from 'node:assert/strict';
import { chmod, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import type { Caller } from '../../../core/caller.js';
import { PirError } from '../../../core/errors.js';
import { ConfigError, loadConfig } from '../../../infra/config.js';
import { openAuthenticator } from '../../../infra/identity/index.js';
import { parseTokensFile, tokenDigest, TokensFileAuthenticator, TokensFileError } from '../../../infra/identity/tokens-file.js';
import { waitFor } from '../../support/pir-process.js';

const ADMIN = 'admin-token-for-unit-tests';
const TOKEN_A = 'tok-a-0123456789abcdef';
const TOKEN_B = 'tok-b-fedcba9876543210';

/** A logger whose lines are kept for the assertions. */
function capturingLogger() {
  const lines: Record<string, any>[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => { lines.push(JSON.parse(line)); } });
  return { log, lines };
}

const entry = (token: string, project_id: string, user_id: string, roles: string[]) => ({ token, project_id, user_id, roles });
const fileText = (...tokens: unknown[]) => JSON.stringify({ tokens });

async function refused(auth: TokensFileAuthenticator, token: string): Promise<boolean> {
  try {
    await auth.authenticate(token);
    return false;
  } catch (error) {
    assert.ok(error instanceof PirError && error.kind === 'unauthorized' && error.code === 'token_invalid', String(error));
    return true;
  }
}

describe('tokens file: parsing', () => {
  it('maps each token to its caller, with the roles Keystone would imply', () => {
    const callers = parseTokensFile(fileText(
      entry(TOKEN_A, 'demo', 'alice', ['admin']),
      entry(TOKEN_B, 'other', 'bob', ['reader']),
      entry('tok-c', 'demo', 'carol', ['member']),
    ));
    assert.deepEqual(callers.get(tokenDigest(TOKEN_A)), { project_id: 'demo', user_id: 'alice', roles: ['admin', 'member', 'reader'] });
    assert.deepEqual(callers.get(tokenDigest(TOKEN_B)), { project_id: 'other', user_id: 'bob', roles: ['reader'] });
    assert.deepEqual(callers.get(tokenDigest('tok-c'))?.roles, ['member', 'reader']);
    assert.equal(parseTokensFile('{"tokens": []}').size, 0);
  });

  it('refuses every malformed file with a message naming the problem, never the token', () => {
    const cases: [string, RegExp][] = [
      ['{not json', /not valid JSON/],
      ['[]', /one JSON object/],
      ['{"tokens": {}}', /"tokens" must be an array/],
      ['{"tokens": [], "extra": 1}', /top-level object has unknown key\(s\) "extra"/],
      [fileText('x'), /tokens\[0\] must be an object/],
      [fileText({ ...entry(TOKEN_A, 'p', 'u', ['member']), project: 'p' }), /tokens\[0\] has unknown key\(s\) "project"/],
      [fileText({ token: TOKEN_A, project_id: 'p', roles: ['member'] }), /tokens\[0\]\.user_id must be a non-empty string/],
      [fileText(entry(TOKEN_A, '', 'u', ['member'])), /tokens\[0\]\.project_id must be a non-empty string/],
      [fileText(entry('has space', 'p', 'u', ['member'])), /tokens\[0\]\.token may hold only visible ASCII/],
      [fileText(entry(TOKEN_A, 'p', 'u', [])), /tokens\[0\]\.roles must be a non-empty array of admin, member, reader/],
      [fileText(entry(TOKEN_A, 'p', 'u', ['member']), entry(TOKEN_B, 'p', 'u', ['owner'])), /tokens\[1\]\.roles\[0\] is "owner"; a role is one of admin, member, reader, service/],
      [fileText(entry(TOKEN_A, 'p', 'u', ['member', 'member'])), /tokens\[0\]\.roles lists "member" twice/],
      [fileText(entry(TOKEN_A, 'p', 'u', ['member']), entry(TOKEN_A, 'q', 'v', ['reader'])), /tokens\[1\]\.token is the same token as tokens\[0\]\.token/],
      [fileText(entry('t'.repeat(4097), 'p', 'u', ['member'])), /tokens\[0\]\.token is longer than 4096/],
    ];
    for (const [text, message] of cases) {
      assert.throws(() => parseTokensFile(text), (error: Error) => {
        assert.ok(error instanceof TokensFileError);
        assert.match(error.message, message);
        assert.ok(!error.message.includes(TOKEN_A) && !error.message.includes(TOKEN_B), `the message shows a token: ${error.message}`);
        return true;
      }, text.slice(0, 80));
    }
  });
});

describe('tokens file: the authenticator', () => {
  let dir: string;
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'pir-tokens-')); });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  it('accepts the admin token as project admin, user admin, and nothing else without a file', async () => {
    const auth = await TokensFileAuthenticator.open({ path: null, adminToken: ADMIN, log: pino({ level: 'silent' }) });
    assert.deepEqual(await auth.authenticate(ADMIN), { project_id: 'admin', user_id: 'admin', roles: ['admin', 'member', 'reader'] });
    assert.equal(auth.challenge, null);
    assert.ok(await refused(auth, TOKEN_A));
    await auth.close();
  });

  it('looks tokens up by digest only: no prefix, extension or near miss of a token passes', async () => {
    const path = join(dir, 'digest.json');
    await writeFile(path, fileText(entry(TOKEN_A, 'demo', 'alice', ['member'])));
    const auth = await TokensFileAuthenticator.open({ path, adminToken: ADMIN, log: pino({ level: 'silent' }) });
    // What is kept is the SHA-256 digest of each token, never the token.
    const kept = [...(auth as unknown as { callers: Map<string, Caller> }).callers.keys()];
    assert.deepEqual(kept, [tokenDigest(TOKEN_A)]);
    assert.ok(kept.every((k) => Buffer.from(k, 'base64').length === 32));
    assert.equal((await auth.authenticate(TOKEN_A)).user_id, 'alice');
    for (const near of [TOKEN_A.slice(0, -1), TOKEN_A + 'x', TOKEN_A.slice(0, -1) + 'g', TOKEN_A.toUpperCase(), ADMIN.slice(0, -1), '']) {
      assert.ok(await refused(auth, near), `accepted a near miss: ${near}`);
    }
    await auth.close();
  });

  it('stops start-up on a bad file, naming the variable, the file and the problem', async () => {
    const path = join(dir, 'bad.json');
    await writeFile(path, fileText(entry(TOKEN_A, 'demo', 'alice', ['owner'])));
    const config = loadConfig({ PIR_TOKENS_FILE: path, PIR_DATA_DIR: dir });
    await assert.rejects(openAuthenticator(config, ADMIN, pino({ level: 'silent' })), (error: Error) =>
      error instanceof ConfigError && error.message.startsWith(`PIR_TOKENS_FILE: ${path}: tokens[0].roles[0] is "owner"`));
    const missing = loadConfig({ PIR_TOKENS_FILE: join(dir, 'nope.json'), PIR_DATA_DIR: dir });
    await assert.rejects(openAuthenticator(missing, ADMIN, pino({ level: 'silent' })), /PIR_TOKENS_FILE: .*nope\.json: cannot be read \(ENOENT\)/);
    await writeFile(path, fileText(entry(ADMIN, 'demo', 'alice', ['member'])));
    await assert.rejects(TokensFileAuthenticator.open({ path, adminToken: ADMIN, log: pino({ level: 'silent' }) }), /an entry holds the admin token/);
  });

  it('refuses a file any user may write, at start and when it changes (anyone could grant themselves admin)', async () => {
    const path = join(dir, 'world-writable.json');
    await writeFile(path, fileText(entry(TOKEN_A, 'demo', 'alice', ['member'])));
    await chmod(path, 0o666);
    const config = loadConfig({ PIR_TOKENS_FILE: path, PIR_DATA_DIR: dir });
    await assert.rejects(openAuthenticator(config, ADMIN, pino({ level: 'silent' })), (error: Error) =>
      error instanceof ConfigError && error.message.includes('mode 0666') && error.message.includes(`chmod 600 ${path}`));
    await chmod(path, 0o640);
    const { log, lines } = capturingLogger();
    const auth = await TokensFileAuthenticator.open({ path, adminToken: ADMIN, log });
    try {
      await chmod(path, 0o666);
      await writeFile(path, fileText(entry(TOKEN_A, 'demo', 'alice', ['member']), entry(TOKEN_B, 'other', 'mallory', ['admin'])));
      await waitFor(() => lines.some((l) => l.msg?.includes('refused the changed file')), 5000, 'the world-writable edit to be refused');
      assert.match(lines.find((l) => l.msg?.includes('refused the changed file'))!.problem, /any user of this machine may write it/);
      assert.ok(await refused(auth, TOKEN_B), 'the token added to a world-writable file is not taken');
      assert.equal((await auth.authenticate(TOKEN_A)).user_id, 'alice');
    } finally {
      await auth.close();
    }
  });

  it('re-reads the file when it changes in place or is renamed over, and keeps the last good set on a bad edit', async () => {
    const path = join(dir, 'tokens.json');
    await writeFile(path, fileText(entry(TOKEN_A, 'demo', 'alice', ['member'])));
    const { log, lines } = capturingLogger();
    const auth = await TokensFileAuthenticator.open({ path, adminToken: ADMIN, log });
    try {
      assert.equal((await auth.authenticate(TOKEN_A)).project_id, 'demo');
      assert.ok(await refused(auth, TOKEN_B));

      // In place (as `>` or most programs do).
      await writeFile(path, fileText(entry(TOKEN_A, 'demo', 'alice', ['reader']), entry(TOKEN_B, 'other', 'bob', ['admin'])));
      await waitFor(async () => !(await refused(auth, TOKEN_B)), 5000, 'the in-place edit to be picked up');
      assert.deepEqual(await auth.authenticate(TOKEN_B), { project_id: 'other', user_id: 'bob', roles: ['admin', 'member', 'reader'] });
      assert.deepEqual((await auth.authenticate(TOKEN_A)).roles, ['reader']);

      // A bad edit: refused, logged, and the last good set stays.
      await writeFile(path, '{"tokens": [{"token": "x"');
      await waitFor(() => lines.some((l) => l.msg?.includes('refused the changed file')), 5000, 'the bad edit to be reported');
      const report = lines.find((l) => l.msg?.includes('refused the changed file'))!;
      assert.equal(report.level, 50);
      assert.match(report.problem, /not valid JSON/);
      assert.equal((await auth.authenticate(TOKEN_B)).user_id, 'bob');
      assert.equal(auth.size, 2);

      // As editors save: write a new file, rename it over the old one.
      const tmp = join(dir, '.tokens.json.swp');
      await writeFile(tmp, fileText(entry(TOKEN_B, 'other', 'bob', ['member'])));
      await rename(tmp, path);
      await waitFor(async () => refused(auth, TOKEN_A), 5000, 'the renamed file to be picked up');
      assert.deepEqual((await auth.authenticate(TOKEN_B)).roles, ['member', 'reader']);
      assert.equal((await auth.authenticate(ADMIN)).project_id, 'admin', 'the admin token survives every reload');

      // Removed: the last good set stays until a file is back.
      await rm(path);
      await waitFor(() => lines.some((l) => l.msg?.includes('missing; keeping')), 5000, 'the removal to be reported');
      assert.equal((await auth.authenticate(TOKEN_B)).user_id, 'bob');
      assert.ok(lines.every((l) => !JSON.stringify(l).includes(TOKEN_A) && !JSON.stringify(l).includes(TOKEN_B)), 'a log line shows a token');
    } finally {
      await auth.close();
    }
  });
});
