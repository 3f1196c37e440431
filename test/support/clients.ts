/**
 * Real Glance clients in the e2e tests: where `infra/local/services.sh install clients` put them,
 * a `pir serve` with a tokens file for two projects, and the drivers' one-JSON-line-per-step
 * output turned into one test per step.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { makeTempDir, removeDir } from './images.js';
import { freePort, startPirProcess, testLogDir, type PirProcess } from './pir-process.js';
import { inCI, services, uniqueName } from './services.js';

/** The checkout's root (the directory holding package.json), from dist/test/support or test/support. */
export const repoRoot: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('package.json not found above test/support');
    dir = parent;
  }
  return dir;
})();

const cacheDir = process.env.PIR_CACHE_DIR || join(process.env.HOME || '/root', '.cache', 'pir');

/** The same key as pir_files_key in infra/local/clients.sh: sha256 over the files' bytes, 16 hex digits. */
async function filesKey(files: string[]): Promise<string> {
  const hash = createHash('sha256');
  for (const file of files) hash.update(await readFile(join(repoRoot, file)));
  return hash.digest('hex').slice(0, 16);
}

export interface InstalledClient { name: string; path: string; present: boolean }

export async function openstacksdkPython(): Promise<InstalledClient> {
  const path = process.env.PIR_OPENSTACKSDK_PYTHON
    || join(cacheDir, 'clients', `openstacksdk-${await filesKey(['infra/local/clients/openstacksdk-requirements.txt'])}`, 'bin', 'python');
  const complete = process.env.PIR_OPENSTACKSDK_PYTHON ? existsSync(path) : existsSync(join(dirname(dirname(path)), '.complete'));
  return { name: 'openstacksdk', path, present: complete };
}

export async function tempestCommand(): Promise<InstalledClient> {
  const path = process.env.PIR_TEMPEST
    || join(cacheDir, 'clients', `tempest-${await filesKey(['infra/local/clients/tempest-requirements.txt'])}`, 'bin', 'tempest');
  const complete = process.env.PIR_TEMPEST ? existsSync(path) : existsSync(join(dirname(dirname(path)), '.complete'));
  return { name: 'tempest', path, present: complete };
}

export async function gophercloudDriver(): Promise<InstalledClient> {
  const src = 'test/clients/gophercloud';
  const path = process.env.PIR_GOPHERCLOUD_DRIVER
    || join(cacheDir, 'clients', `gophercloud-${await filesKey([`${src}/go.mod`, `${src}/go.sum`, `${src}/main.go`])}`, 'pir-gophercloud');
  return { name: 'gophercloud driver', path, present: existsSync(path) };
}

const INSTALL_HINT = 'bash infra/local/services.sh install clients';

/**
 * Skip reason for describe(): a missing client skips the suite visibly, except in CI, where the
 * suite runs and its before() fails (see requireClient).
 */
export function skipUnlessInstalled(client: InstalledClient): string | false {
  if (client.present || inCI) return false;
  console.log(`# ${client.name} e2e skipped: ${client.path} is missing; run ${INSTALL_HINT}`);
  return `${client.name} not installed (${INSTALL_HINT})`;
}

export function requireClient(client: InstalledClient): void {
  if (!client.present) throw new Error(`${client.name} is missing at ${client.path}${inCI ? ' and CI is set' : ''}: run ${INSTALL_HINT}`);
}

/** One identity of the tokens file. */
export interface Identity { token: string; project_id: string; user_id: string; roles: string[] }

/**
 * Two projects, A and B, each with a member and a reader, and an admin: random tokens and
 * Keystone-like project ids. Roles are listed as a Keystone token lists them (implied ones too).
 */
export function makeIdentities() {
  const project = () => randomUUID().replace(/-/g, '');
  const token = () => randomBytes(24).toString('base64url');
  const projectA = project();
  const projectB = project();
  const adminProject = project();
  const ids = {
    A: { token: token(), project_id: projectA, user_id: 'alice', roles: ['member', 'reader'] },
    Ar: { token: token(), project_id: projectA, user_id: 'anne-reader', roles: ['reader'] },
    B: { token: token(), project_id: projectB, user_id: 'bob', roles: ['member', 'reader'] },
    Br: { token: token(), project_id: projectB, user_id: 'bea-reader', roles: ['reader'] },
    admin: { token: token(), project_id: adminProject, user_id: 'root', roles: ['admin', 'member', 'reader'] },
  } satisfies Record<string, Identity>;
  return ids;
}
export type Identities = ReturnType<typeof makeIdentities>;

export type PirMode = 'embedded' | 'distributed';

/** `env`: what the processes were started with (a test that kills one starts its replacement with it). */
export interface TenantPir { url: string; tokensFile: string; processes: PirProcess[]; env: Record<string, string>; stop(): Promise<void> }

/**
 * PIR with PIR_TOKENS_FILE holding the identities: `pir serve` (embedded), or `pir api` and one
 * `pir worker` on the real Kafka, Redis and FerretDB with names unique to this run (distributed;
 * the caller checks the services first, see requireServices).
 */
export async function startTenantPir(dir: string, identities: Record<string, Identity>, logDir: string, mode: PirMode = 'embedded', extraEnv: Record<string, string> = {}): Promise<TenantPir> {
  const tokensFile = join(dir, 'tokens.json');
  await writeFile(tokensFile, JSON.stringify({ tokens: Object.values(identities) }, null, 2), { mode: 0o600 });
  const port = await freePort();
  const env: Record<string, string> = {
    PIR_DATA_DIR: join(dir, 'data'),
    PIR_TOKENS_FILE: tokensFile,
    PIR_ADMIN_TOKEN: randomBytes(24).toString('base64url'),
    ...extraEnv,
  };
  const processes: PirProcess[] = [];
  // SIGTERM lets PIR drain; one that does not exit within 30 s (a request stuck) is killed.
  const stop = async () => {
    for (const p of processes.reverse()) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => { timer = setTimeout(() => resolve('late'), 30_000); });
      if ((await Promise.race([p.stop(), late])) === 'late') await p.kill();
      clearTimeout(timer);
    }
  };
  try {
    if (mode === 'embedded') {
      processes.push(await startPirProcess('serve', { ...env, PIR_PORT: String(port) }, logDir));
    } else {
      const run = uniqueName('xt').replace(/[^A-Za-z0-9]/g, '');
      const mongo = new URL(services.mongodbUrl);
      mongo.pathname = `/${run}`;
      Object.assign(env, {
        PIR_KAFKA_BROKERS: services.kafkaBrokers.join(','),
        PIR_REDIS_URL: services.redisUrl,
        PIR_MONGODB_URL: mongo.toString(),
        PIR_KAFKA_TOPIC: `pir.${run}`,
        PIR_REDIS_PREFIX: run,
      });
      processes.push(await startPirProcess('api', { ...env, PIR_PORT: String(port) }, logDir, 'api'));
      processes.push(await startPirProcess('worker', env, logDir, 'worker'));
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: `http://127.0.0.1:${port}`, tokensFile, processes, env, stop };
}

/**
 * Whether each identity authenticates (GET /v2/images → 200). Without tokens-file support every
 * project token is a 401: the caller reports that instead of a cascade of obscure failures.
 */
export async function identitiesAccepted(url: string, identities: Record<string, Identity>): Promise<string[]> {
  const refused: string[] = [];
  for (const [name, identity] of Object.entries(identities)) {
    const response = await fetch(`${url}/v2/images?limit=1`, { headers: { 'x-auth-token': identity.token } });
    await response.arrayBuffer();
    if (response.status !== 200) refused.push(`${name} (${identity.project_id}, roles ${identity.roles.join('+')}): GET /v2/images → ${response.status}`);
  }
  return refused;
}

/** The steps every driver reports, in order (test/clients/*: openstacksdk_flow.py, gophercloud/main.go). */
export const FLOW_STEPS = [
  'connect', 'create', 'upload', 'stage', 'import', 'wait', 'list_property', 'list_tag',
  'list_status', 'update', 'tags', 'member_create', 'member_accept', 'member_list',
  'member_delete', 'download', 'delete',
] as const;

export interface StepResult { step: string; ok: boolean; detail: string }

export interface DriverRun { steps: Map<string, StepResult>; stdout: string; stderr: string; exitCode: number | null }

/** Runs a driver to the end (it never stops at a failed step) and parses its JSON lines. */
export async function runDriver(command: string, args: string[], env: Record<string, string>, timeoutMs = 600_000): Promise<DriverRun> {
  const { stdout, stderr, code } = await new Promise<{ stdout: string; stderr: string; code: number | null }>((resolve) => {
    execFile(command, args, { env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env }, timeout: timeoutMs, maxBuffer: 16 << 20 },
      (error, out, err) => resolve({ stdout: String(out), stderr: String(err), code: error ? (typeof error.code === 'number' ? error.code : null) : 0 }));
  });
  const steps = new Map<string, StepResult>();
  for (const line of stdout.split('\n')) {
    if (!line.trim().startsWith('{')) continue;
    try {
      const parsed = JSON.parse(line) as StepResult;
      if (typeof parsed.step === 'string') steps.set(parsed.step, parsed);
    } catch { /* not a step line */ }
  }
  return { steps, stdout, stderr, exitCode: code };
}

/** Asserts one step: reported, and ok; the message carries the driver's own detail. */
export function assertStep(run: DriverRun | undefined, step: string): void {
  assert.ok(run, 'the driver did not run (see the suite\'s before hook)');
  const result = run.steps.get(step);
  assert.ok(result, `the driver never reported step "${step}" (exit ${run.exitCode}); stderr: ${run.stderr.slice(-2000)}`);
  assert.ok(result.ok, `step "${step}" failed: ${result.detail}`);
}

/** A raw disk image with real content: zeros first (no format signature), then random bytes. */
export async function makeRawImage(path: string, bytes = 2 << 20): Promise<void> {
  await writeFile(path, Buffer.concat([Buffer.alloc(64 << 10), randomBytes(bytes)]));
}

/**
 * One suite per client: `pir serve` with projects A and B from a tokens file, the driver run once
 * against it, then one test per step, so the report names exactly the step that failed and why.
 * `extraSteps`: the steps a driver reports beyond FLOW_STEPS (what only that client offers).
 */
export function clientFlowSuite(label: string, client: InstalledClient, invocation: (client: InstalledClient) => { command: string; args: string[] }, extraSteps: readonly string[] = []): void {
  describe(`${label} against pir serve with two projects`, { skip: skipUnlessInstalled(client) }, () => {
    let dir: string | undefined;
    let tenant: TenantPir | undefined;
    let run: DriverRun | undefined;
    let refused: string[] = [];

    before(async () => {
      requireClient(client);
      dir = await makeTempDir(`pir-e2e-${label}-`);
      const ids = makeIdentities();
      tenant = await startTenantPir(dir, ids, testLogDir(label));
      refused = await identitiesAccepted(tenant.url, { A: ids.A, B: ids.B });
      const file = join(dir, 'disk.raw');
      await makeRawImage(file);
      const { command, args } = invocation(client);
      run = await runDriver(command, args, {
        PIR_ENDPOINT: tenant.url,
        PIR_TOKEN_A: ids.A.token,
        PIR_TOKEN_B: ids.B.token,
        PIR_PROJECT_B: ids.B.project_id,
        PIR_TOKEN_ADMIN: ids.admin.token,
        PIR_IMAGE_FILE: file,
        PIR_RUN_ID: randomBytes(4).toString('hex'),
      });
      for (const result of run.steps.values()) console.log(`# ${label} ${result.ok ? 'ok ' : 'FAIL'} ${result.step}: ${result.detail.slice(0, 300)}`);
    });
    after(async () => {
      await tenant?.stop();
      if (dir) await removeDir(dir);
    });

    it('identity: the project tokens of PIR_TOKENS_FILE authenticate', () => {
      assert.deepEqual(refused, [], `tokens refused — PIR_TOKENS_FILE not honoured?\n${refused.join('\n')}`);
    });
    for (const step of [...FLOW_STEPS, ...extraSteps]) it(step, () => assertStep(run, step));
  });
}
