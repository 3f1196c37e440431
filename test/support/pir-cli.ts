/** Runs the compiled `pir` command for the tests, capturing its output and exit code. */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const PIR_CLI = fileURLToPath(new URL('../../cli/main.js', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `env` values of null remove a variable. Output goes to pipes: the command sees no terminal. */
export function startCli(args: string[], env: Record<string, string | null> = {}): { child: ChildProcess; done: Promise<CliResult> } {
  const full: Record<string, string> = { PATH: process.env.PATH ?? '' };
  for (const [key, value] of Object.entries(env)) {
    if (value === null) delete full[key];
    else full[key] = value;
  }
  const child = spawn(process.execPath, [PIR_CLI, ...args], { env: full, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => { stdout += c; });
  child.stderr!.setEncoding('utf8').on('data', (c: string) => { stderr += c; });
  const done = new Promise<CliResult>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  return { child, done };
}

export function runCli(args: string[], env: Record<string, string | null> = {}): Promise<CliResult> {
  return startCli(args, env).done;
}
