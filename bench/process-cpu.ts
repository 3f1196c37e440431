/**
 * CPU time of processes from /proc (Linux), for benches that judge a change by CPU per unit of
 * work rather than by a wall-clock rate on a shared, loaded machine. A process's figure includes
 * its live children (PostgreSQL's backends under the postmaster) and the children it reaped.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { processCpuMs } from './limits.js';

const TICK_MS = 10; // USER_HZ is 100 on every Linux we run on

function children(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Reaped children's CPU ms (cutime + cstime): PostgreSQL backends that exited. */
function reapedCpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[13]) + Number(f[14])) * TICK_MS;
}

/**
 * CPU ms of `pid`'s main thread alone (its JavaScript event loop), without worker threads, libuv's
 * pool or GC helpers: the thread a Node server saturates first, so the one whose cost sets its rate.
 */
export function mainThreadCpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_MS;
}

/** CPU ms of `pid` (limits.ts' processCpuMs), its reaped children and, recursively, its live children; null if gone. */
export function processTreeCpuMs(pid: number): number | null {
  try {
    return processCpuMs(pid) + reapedCpuMs(pid) + children(pid).reduce((sum, child) => sum + (processTreeCpuMs(child) ?? 0), 0);
  } catch {
    return null;
  }
}

/** The pid listening on 127.0.0.1:`port` (or any address), from `ss`; null when unknown. */
export function listenerPid(port: number): number | null {
  try {
    const out = execFileSync('ss', ['-Hltnp', `sport = :${port}`], { encoding: 'utf8' });
    const m = /pid=(\d+)/.exec(out);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** The postmaster of the PostgreSQL cluster a FerretDB process stores into (its --postgresql-url port), if any. */
export function ferretdbPostgresPid(ferretdbPid: number): number | null {
  try {
    const args = readFileSync(`/proc/${ferretdbPid}/cmdline`, 'utf8').split('\0');
    const url = args.find((a) => a.startsWith('--postgresql-url='));
    if (!url) return null;
    const port = new URL(url.slice('--postgresql-url='.length)).port;
    return port ? listenerPid(Number(port)) : null;
  } catch {
    return null;
  }
}

/** Samples several named processes at once; `since()` gives each one's CPU ms used meanwhile. */
export class CpuMeter {
  private readonly start = new Map<string, number>();

  constructor(private readonly pids: Record<string, number | null | undefined>) {
    for (const [name, pid] of Object.entries(pids)) {
      const ms = pid ? processTreeCpuMs(pid) : null;
      if (ms !== null) this.start.set(name, ms);
    }
  }

  since(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, before] of this.start) {
      const now = processTreeCpuMs(this.pids[name]!);
      if (now !== null) out[name] = now - before;
    }
    return out;
  }
}

/**
 * The whole machine's CPU time from /proc/stat, to say how much of it a run had: on a VM the
 * host may take time from the guest's vCPUs (steal), which no process's figure shows but
 * which lowers every rate measured meanwhile.
 */
export class MachineCpu {
  private readonly start = MachineCpu.read();

  private static read(): { busy: number; idle: number; steal: number } {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = f;
    return { busy: user + nice + system + irq + softirq, idle: idle + iowait, steal };
  }

  /** Shares of the vCPUs' time since construction: busy (this guest's work), idle, and stolen by the host. */
  since(): { busyPct: number; idlePct: number; stealPct: number } {
    const now = MachineCpu.read();
    const busy = now.busy - this.start.busy;
    const idle = now.idle - this.start.idle;
    const steal = now.steal - this.start.steal;
    const total = Math.max(1, busy + idle + steal);
    return { busyPct: (100 * busy) / total, idlePct: (100 * idle) / total, stealPct: (100 * steal) / total };
  }

  /** "machine busy 71%, idle 12%, stolen by the host 17%". */
  note(): string {
    const s = this.since();
    return `machine busy ${s.busyPct.toFixed(0)}%, idle ${s.idlePct.toFixed(0)}%, stolen by the host ${s.stealPct.toFixed(0)}%`;
  }
}
