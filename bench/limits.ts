/**
 * This machine's physical limits, measured in the same run as a benchmark (the machines are
 * shared and noisy: compare a figure only with limits taken beside it). Each returns MiB/s.
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fdatasyncSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { request } from 'node:http';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

const mibPerSec = (bytes: number, ms: number) => bytes / MiB / (ms / 1000);

function hashRate(algorithm: string, seconds: number): number {
  const block = randomBytes(MiB);
  const warm = createHash(algorithm);
  for (let i = 0; i < 16; i++) warm.update(block);
  warm.digest();
  const h = createHash(algorithm);
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < seconds * 1000) {
    for (let i = 0; i < 8; i++) h.update(block);
    n += 8;
    t = performance.now();
  }
  h.digest();
  return mibPerSec(n * MiB, t - t0);
}

/** sha512 on one core: node:crypto (OpenSSL), 1 MiB updates, for `seconds`. */
export async function sha512OneCore(seconds = 1.5): Promise<number> {
  return hashRate('sha512', seconds);
}

/** md5 on one core: node:crypto (OpenSSL), 1 MiB updates, for `seconds`. */
export async function md5OneCore(seconds = 1.5): Promise<number> {
  return hashRate('md5', seconds);
}

const PAIR_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash, randomBytes } = require('node:crypto');
const block = randomBytes(1 << 20);
const flag = new Int32Array(workerData.flag);
Atomics.add(flag, 1, 1);
Atomics.wait(flag, 0, 0); // start together
const h = createHash(workerData.algorithm);
let n = 0;
const t0 = performance.now();
let t = t0;
while (t - t0 < workerData.seconds * 1000) {
  for (let i = 0; i < 4; i++) h.update(block);
  n += 4;
  t = performance.now();
}
h.digest();
parentPort.postMessage(n / ((t - t0) / 1000));
`;

/**
 * md5 and sha512 at the same time, each on its own thread (as the hash pool runs them): on a
 * small VM the two vCPUs slow each other down (shared core or cache, host contention), so this
 * is the real ceiling for computing both digests of one stream. Returns each rate and their
 * minimum, the pace at which both digests of the same bytes can be had.
 */
export async function md5AndSha512Parallel(seconds = 1.5): Promise<{ md5: number; sha512: number; both: number }> {
  const flag = new SharedArrayBuffer(8);
  const f = new Int32Array(flag);
  const run = (algorithm: string) => {
    const w = new Worker(PAIR_WORKER, { eval: true, workerData: { algorithm, seconds, flag } });
    return new Promise<number>((resolve, reject) => {
      w.once('message', (rate: number) => {
        resolve(rate);
        void w.terminate();
      });
      w.once('error', reject);
    });
  };
  const md5 = run('md5');
  const sha512 = run('sha512');
  while (Atomics.load(f, 1) < 2) await new Promise((r) => setTimeout(r, 5));
  Atomics.store(f, 0, 1);
  Atomics.notify(f, 0);
  const [m, s] = await Promise.all([md5, sha512]);
  return { md5: m, sha512: s, both: Math.min(m, s) };
}

/** Writes `bytes` to a new file in `dir` with 1 MiB writes, then fdatasync; the rate includes the sync. */
export async function sequentialWriteWithFsync(dir: string, bytes = GiB): Promise<number> {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `limit-write-${process.pid}-${Date.now()}.tmp`);
  const block = randomBytes(MiB);
  const fd = openSync(path, 'wx', 0o600);
  try {
    const t0 = performance.now();
    for (let done = 0; done < bytes; ) {
      const n = Math.min(MiB, bytes - done);
      done += writeSync(fd, block, 0, n);
    }
    fdatasyncSync(fd);
    return mibPerSec(bytes, performance.now() - t0);
  } finally {
    closeSync(fd);
    rmSync(path, { force: true });
  }
}

// The server runs on its own thread (as curl and the server were separate processes in the
// reference measurement); it discards the body and answers with the byte count.
const SERVER = `
const { parentPort } = require('node:worker_threads');
const http = require('node:http');
const server = http.createServer((req, res) => {
  let n = 0;
  req.on('data', (c) => { n += c.length; });
  req.on('end', () => res.end(String(n)));
});
server.listen(0, '127.0.0.1', () => parentPort.postMessage(server.address().port));
`;

/** A client streaming `bytes` (1 MiB writes, with backpressure) to a discarding Node server over 127.0.0.1. */
export async function loopbackHttp(bytes = GiB): Promise<number> {
  const server = new Worker(SERVER, { eval: true });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      server.once('message', resolve);
      server.once('error', reject);
    });
    const block = randomBytes(MiB);
    const t0 = performance.now();
    const received = await new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method: 'PUT', path: '/', headers: { 'content-length': String(bytes) } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(Number(body)));
        res.on('error', reject);
      });
      req.on('error', reject);
      let sent = 0;
      const pump = (): void => {
        while (sent < bytes) {
          const n = Math.min(MiB, bytes - sent);
          sent += n;
          if (!req.write(n === MiB ? block : block.subarray(0, n))) {
            req.once('drain', pump);
            return;
          }
        }
        req.end();
      };
      pump();
    });
    const ms = performance.now() - t0;
    if (received !== bytes) throw new Error(`loopback server received ${received} of ${bytes} bytes`);
    return mibPerSec(bytes, ms);
  } finally {
    await server.terminate();
  }
}

// ---------------------------------------------------------------- background load

function procStat(): { idle: number; total: number } | null {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    return { idle: f[3]! + (f[4] ?? 0), total: f.reduce((a, b) => a + b, 0) };
  } catch {
    return null; // not Linux
  }
}

/** CPU milliseconds another process has used so far (utime + stime, all its threads; Linux). */
export function processCpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10; // clock ticks of 10 ms (USER_HZ 100)
}

export interface CpuShare {
  /** Fraction of all cores busy. */
  machine: number;
  /** Fraction of all cores this process used (all its threads). */
  own: number;
  /** What other processes used: the noise in this measurement. */
  others: number;
}

/** Starts measuring CPU use; the returned function stops and reports (null where /proc/stat is missing). */
export function cpuProbe(): () => CpuShare | null {
  const s0 = procStat();
  const u0 = process.cpuUsage();
  const t0 = performance.now();
  return () => {
    const s1 = procStat();
    if (!s0 || !s1 || s1.total === s0.total) return null;
    const u = process.cpuUsage(u0);
    const machine = 1 - (s1.idle - s0.idle) / (s1.total - s0.total);
    const own = Math.min(machine, (u.user + u.system) / 1000 / (performance.now() - t0) / availableParallelism());
    return { machine, own, others: Math.max(0, machine - own) };
  };
}

/**
 * Waits (up to `maxWaitMs`) until other processes leave the machine mostly idle — these machines
 * are shared — and returns the busy fraction last seen (0 where it cannot be measured).
 */
export async function waitForQuiet(maxWaitMs = 30_000, busyBelow = 0.1): Promise<number> {
  const until = Date.now() + maxWaitMs;
  let busy = 0;
  do {
    const stop = cpuProbe();
    await new Promise((r) => setTimeout(r, 1000));
    const s = stop();
    if (!s) return 0;
    busy = s.others;
    if (busy < busyBelow) return busy;
  } while (Date.now() < until);
  return busy;
}

// A server on its own thread answering GET with `bytes` bytes (1 MiB writes of one random block,
// with backpressure), as a store's download would.
const SENDER = `
const { parentPort, workerData } = require('node:worker_threads');
const http = require('node:http');
const { randomBytes } = require('node:crypto');
const block = randomBytes(1024 * 1024);
const server = http.createServer((req, res) => {
  const bytes = Number(new URL(req.url, 'http://x').searchParams.get('bytes'));
  res.writeHead(200, { 'content-length': String(bytes), 'content-type': 'application/octet-stream' });
  let sent = 0;
  const pump = () => {
    while (sent < bytes) {
      const n = Math.min(block.length, bytes - sent);
      sent += n;
      if (!res.write(n === block.length ? block : block.subarray(0, n))) { res.once('drain', pump); return; }
    }
    res.end();
  };
  pump();
});
server.listen(0, '127.0.0.1', () => parentPort.postMessage(server.address().port));
`;

/** Reads a GET response to its end, discarding the bytes (no hashing): the client side of a download figure. Returns the byte count. */
export function discardingGet(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`GET ${url} answered ${res.statusCode}`));
        return;
      }
      let n = 0;
      res.on('data', (c: Buffer) => { n += c.length; });
      res.on('end', () => resolve(n));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

export interface Download {
  bytes: number;
  ms: number;
  /** the client process's CPU seconds for the whole download */
  cpuSeconds: number;
}

const DOWNLOAD_CLIENT = join(dirname(fileURLToPath(import.meta.url)), 'download-client.js');

/** `discardingGet` run by a client process of its own (download-client.ts): what it read, how long, its CPU. */
export function discardingGetInOwnProcess(url: string, headers: Record<string, string> = {}): Promise<Download> {
  const args = [DOWNLOAD_CLIENT, url, ...Object.entries(headers).map(([k, v]) => `${k}=${v}`)];
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { maxBuffer: 64 * 1024 }, (error, stdout, stderr) => {
      if (error) return reject(new Error(`download client: ${error.message}${stderr ? `: ${stderr.trim()}` : ''}`));
      resolve(JSON.parse(stdout) as Download);
    });
  });
}

/**
 * Loopback HTTP download: a Node server (on a thread of this process) sending `bytes` to a
 * discarding client in its own process (`discardingGetInOwnProcess`, the downloads' client), MiB/s.
 */
export async function loopbackHttpDownload(bytes = GiB): Promise<number> {
  const server = new Worker(SENDER, { eval: true });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      server.once('message', resolve);
      server.once('error', reject);
    });
    const got = await discardingGetInOwnProcess(`http://127.0.0.1:${port}/?bytes=${bytes}`);
    if (got.bytes !== bytes) throw new Error(`loopback client received ${got.bytes} of ${bytes} bytes`);
    return mibPerSec(bytes, got.ms);
  } finally {
    await server.terminate();
  }
}
