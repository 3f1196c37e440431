/**
 * Dependency checks for /readyz and `pir doctor`: each check is a named probe; running them
 * measures each one's latency and never lets one slow dependency hold up the answer.
 */
import { randomBytes } from 'node:crypto';
import { unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface DependencyCheck {
  /** Stable name, e.g. "manifest_store". */
  name: string;
  /** What it is, e.g. "mongodb" or "sqlite": never a URL (URLs may hold credentials). */
  kind: string;
  check(): Promise<void>;
}

export interface CheckResult {
  name: string;
  kind: string;
  ok: boolean;
  latency_ms: number;
  error?: string;
}

export interface Readiness {
  ok: boolean;
  checks: CheckResult[];
}

export const CHECK_TIMEOUT_MS = 3000;

/** Runs every check at once, each bounded by `timeoutMs`. */
export async function runChecks(checks: DependencyCheck[], timeoutMs = CHECK_TIMEOUT_MS): Promise<Readiness> {
  const results = await Promise.all(checks.map(async (c): Promise<CheckResult> => {
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        c.check(),
        new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs); }),
      ]);
      return { name: c.name, kind: c.kind, ok: true, latency_ms: elapsed(started) };
    } catch (error) {
      return { name: c.name, kind: c.kind, ok: false, latency_ms: elapsed(started), error: redact((error as Error)?.message ?? String(error)) };
    } finally {
      clearTimeout(timer);
    }
  }));
  return { ok: results.every((r) => r.ok), checks: results };
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 10) / 10;
}

/** Removes user:password@ from any URL in a message: health answers are public. */
export function redact(message: string): string {
  return message.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/gi, '$1***@');
}

/** The directory takes a new file: writes and removes a small probe file. */
export function writableDirCheck(name: string, dir: string): DependencyCheck {
  return {
    name,
    kind: 'filesystem',
    async check() {
      const probe = join(dir, `.pir-health-${process.pid}-${randomBytes(4).toString('hex')}`);
      await writeFile(probe, 'ok');
      await unlink(probe);
    },
  };
}

/**
 * Keystone answers its version document (GET /v3, no credentials sent), and, given `serviceLogin`,
 * PIR's own service login works (a token it holds, or a new one): credentials Keystone refuses
 * leave a Keystone that answers but a PIR that can check no token.
 */
export function keystoneCheck(url: string, timeoutMs = CHECK_TIMEOUT_MS, serviceLogin?: () => Promise<void>): DependencyCheck {
  return {
    name: 'identity',
    kind: 'keystone',
    async check() {
      // fetch() says only "fetch failed": the reason (ECONNREFUSED, a timeout) is in its cause.
      const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), headers: { accept: 'application/json' } }).catch((error: unknown) => {
        const cause = (error as { cause?: { code?: unknown; message?: unknown } })?.cause;
        const why = typeof cause?.code === 'string' ? cause.code : typeof cause?.message === 'string' ? cause.message : (error as Error)?.message;
        throw new Error(`Keystone did not answer GET /v3 (${why})`);
      });
      await response.body?.cancel();
      if (!response.ok) throw new Error(`Keystone answered ${response.status} to GET /v3`);
      await serviceLogin?.();
    },
  };
}
