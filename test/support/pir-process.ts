/** Starts real `pir` processes (serve, api, worker) for the e2e tests, and stops or kills them. */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../cli/main.js', import.meta.url));

export interface PirProcess {
  role: string;
  child: ChildProcess;
  /** Everything the process printed so far. */
  output(): string;
  stop(): Promise<number | null>;
  kill(): Promise<void>;
}

/** Where e2e process logs go; kept after the run so a failure can be read (CI prints the path). */
export function testLogDir(suite: string): string {
  return join(process.env.PIR_TEST_LOG_DIR || join(tmpdir(), 'pir-test-logs'), `${suite}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
}

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  server.close();
  await once(server, 'close');
  return port;
}

/** `launcher`: a command that runs the rest of its arguments (e.g. unshare … to give PIR a small disk). */
export async function startPirProcess(role: 'serve' | 'api' | 'worker' | 'cache', env: Record<string, string>, logDir: string, name: string = role, launcher: string[] = []): Promise<PirProcess> {
  await mkdir(logDir, { recursive: true });
  const log: WriteStream = createWriteStream(join(logDir, `${name}.log`), { flags: 'a' });
  let output = '';
  // PIR_CHILD_NODE_ARGS: node flags for the PIR processes only (e.g. `--cpu-prof --cpu-prof-dir=…` to profile a bench).
  const nodeArgs = process.env.PIR_CHILD_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const command = [...launcher, process.execPath, ...nodeArgs, CLI, role];
  const child = spawn(command[0]!, command.slice(1), {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', PIR_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const collect = (chunk: Buffer) => { output += chunk.toString(); log.write(chunk); };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = once(child, 'exit');
  let gone = false;
  void exited.then(() => { gone = true; });
  // The wait ends when the process does too (a process that gives up must not hold the test for a minute).
  await waitFor(() => gone || output.includes('"msg":"PIR started"'), 60_000);
  if (!output.includes('"msg":"PIR started"')) {
    // Still running after the wait: killed, so that it does not keep the test file's process alive.
    const hung = !gone;
    if (hung) {
      child.kill('SIGKILL');
      await exited;
    }
    log.end();
    throw new Error(`pir ${role} ${hung ? 'did not start within 60 s (killed)' : 'exited before starting'}:\n${output.slice(-4000)}`);
  }
  return {
    role,
    child,
    output: () => output,
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const [code] = await exited;
      log.end();
      return code as number | null;
    },
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
      log.end();
    },
  };
}

export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs: number, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
