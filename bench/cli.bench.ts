/**
 * `pir image create` of a 2 GiB raw image end to end (process start → exit: create, upload with
 * md5 + sha512 computed locally in the same pass, PIR's pipeline to active, the digest check)
 * against `curl -T` of the same file to the same `pir serve` (PUT start → 204 active, no local
 * hashing), runs alternating. Target: pir ≥ 90% of curl's throughput.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { PirClient } from '../client/index.js';
import { freePort, startPirProcess } from '../test/support/pir-process.js';
import { availableParallelism } from 'node:os';
import { GiB, MiB, processCpuMs } from './limits.js';
import { median, type Bench, type Figure } from './report.js';

const run = promisify(execFile);
const TOKEN = 'bench-cli-token-0123456789abcdefghij';
const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));
const SIZE = 2 * GiB;
const RUNS = 3;

/** Runs a command under bash and reads its CPU time (user + system) from bash's `times`. */
async function timed(command: string[], env: Record<string, string> = { PATH: process.env.PATH ?? '' }): Promise<{ ms: number; cpuSeconds: number; stdout: string }> {
  const t0 = performance.now();
  const { stdout, stderr } = await run('bash', ['-c', '"$@"; rc=$?; times >&2; exit $rc', 'bash', ...command], { env, maxBuffer: 1 << 20 });
  const ms = performance.now() - t0;
  const children = stderr.trim().split('\n').pop()!.split(/\s+/).map((t) => {
    const m = /^(\d+)m([\d.]+)s$/.exec(t);
    return m ? Number(m[1]) * 60 + Number(m[2]) : NaN;
  });
  return { ms, cpuSeconds: children[0]! + children[1]!, stdout };
}

async function writeRandomFile(path: string, size: number): Promise<void> {
  const block = randomBytes(64 * MiB);
  const handle = await open(path, 'w');
  try {
    for (let at = 0; at < size; at += block.length) await handle.write(block, 0, Math.min(block.length, size - at), at);
  } finally {
    await handle.close();
  }
}

const bench: Bench = {
  name: 'pir image create vs curl -T (2 GiB raw, pir serve)',
  async run(ctx) {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const dataDir = join(ctx.dir, 'data-cli');
    const file = join(ctx.dir, 'cli-2g.raw');
    const server = await startPirProcess('serve', { PIR_DATA_DIR: dataDir, PIR_ADMIN_TOKEN: TOKEN, PIR_PORT: String(port), PIR_LOG_LEVEL: 'info' }, join(ctx.dir, 'logs'), 'cli-serve');
    const client = new PirClient(url, TOKEN);
    try {
      ctx.log('writing a 2 GiB random file');
      await writeRandomFile(file, SIZE);
      const curlRates: number[] = [];
      const pirRates: number[] = [];
      const bareRates: number[] = [];
      const cpu = { curl: [] as number[], pir: [] as number[], bare: [] as number[] };
      // The server's CPU per GiB in each run: with the client's, what the cores allow at best.
      const serverCpu = { curl: [] as number[], pir: [] as number[] };
      const serverMs = () => processCpuMs(server.child.pid!);
      const perGiB = (seconds: number) => seconds / (SIZE / GiB);
      for (let i = 0; i < RUNS; i++) {
        ctx.log(`run ${i + 1}/${RUNS}: curl -T`);
        const image = await client.createImage({ name: `curl-${i}`, disk_format: 'raw', container_format: 'bare' });
        let s0 = serverMs();
        const curlRun = await timed(['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '-T', file, '-H', `x-auth-token: ${TOKEN}`, '-H', 'content-type: application/octet-stream', `${url}/v2/images/${image.id}/file`]);
        if (curlRun.stdout.trim() !== '204') throw new Error(`curl upload answered ${curlRun.stdout}`);
        curlRates.push(SIZE / MiB / (curlRun.ms / 1000));
        cpu.curl.push(perGiB(curlRun.cpuSeconds));
        serverCpu.curl.push(perGiB((serverMs() - s0) / 1000));
        await client.deleteImage(image.id);

        ctx.log(`run ${i + 1}/${RUNS}: pir image create`);
        s0 = serverMs();
        const pirRun = await timed([process.execPath, CLI, 'image', 'create', '--name', `pir-${i}`, '--disk-format', 'raw', '--file', file, '--format', 'json'], { PATH: process.env.PATH ?? '', PIR_URL: url, PIR_TOKEN: TOKEN });
        const created = JSON.parse(pirRun.stdout) as { id: string; status: string };
        if (created.status !== 'active') throw new Error(`pir image create ended ${created.status}`);
        pirRates.push(SIZE / MiB / (pirRun.ms / 1000));
        cpu.pir.push(perGiB(pirRun.cpuSeconds));
        serverCpu.pir.push(perGiB((serverMs() - s0) / 1000));
        await client.deleteImage(created.id);

        // The same client path with hashing off: what the local md5 + sha512 cost on this machine.
        ctx.log(`run ${i + 1}/${RUNS}: client library, hashing off`);
        const bare = await client.createImage({ name: `bare-${i}`, disk_format: 'raw', container_format: 'bare' });
        const t0 = performance.now();
        const cpu0 = process.cpuUsage();
        await client.uploadFile(bare.id, file, { hash: false });
        bareRates.push(SIZE / MiB / ((performance.now() - t0) / 1000));
        const used = process.cpuUsage(cpu0);
        cpu.bare.push(perGiB((used.user + used.system) / 1e6));
        await client.deleteImage(bare.id);
      }
      const curl = median(curlRates);
      // Client and server share this machine's cores: at best they are all busy, so the rate can
      // not exceed cores ÷ (client + server CPU seconds per GiB).
      const cores = availableParallelism();
      const ceiling = (client: number[], srv: number[]) => (cores / (median(client) + median(srv))) * 1024;
      const pirCeiling = ceiling(cpu.pir, serverCpu.pir);
      const figures: Figure[] = [
        { name: 'curl -T, PUT start → active (no local hashing)', value: curl, unit: 'MiB/s', note: `runs ${curlRates.map((r) => r.toFixed(0)).join(', ')}` },
        { name: 'pir image create, process start → exit (md5 + sha512 locally)', value: median(pirRates), unit: 'MiB/s', limit: curl, targetRatio: 0.9, note: `runs ${pirRates.map((r) => r.toFixed(0)).join(', ')}; limit = curl's median` },
        { name: `pir image create against the CPU ceiling of ${cores} cores`, value: median(pirRates), unit: 'MiB/s', limit: pirCeiling, note: `ceiling = ${cores} cores ÷ (client ${median(cpu.pir).toFixed(2)} + server ${median(serverCpu.pir).toFixed(2)} CPU s/GiB); curl's ceiling is ${ceiling(cpu.curl, serverCpu.curl).toFixed(0)} MiB/s` },
        { name: 'client library upload, hashing off (PUT start → active)', value: median(bareRates), unit: 'MiB/s', limit: curl, note: `runs ${bareRates.map((r) => r.toFixed(0)).join(', ')}; the same path without local hashing` },
        { name: 'client CPU per GiB: curl -T', value: median(cpu.curl), unit: 's/GiB', note: 'user + system, from bash times' },
        { name: 'client CPU per GiB: pir image create (md5 + sha512)', value: median(cpu.pir), unit: 's/GiB', note: `runs ${cpu.pir.map((c) => c.toFixed(2)).join(', ')}; includes node start-up` },
        { name: 'server CPU per GiB: curl -T upload', value: median(serverCpu.curl), unit: 's/GiB', note: 'pir serve, all threads, from /proc' },
        { name: 'server CPU per GiB: pir image create upload', value: median(serverCpu.pir), unit: 's/GiB', note: 'pir serve, all threads, from /proc' },
        { name: 'client CPU per GiB: client library, hashing off', value: median(cpu.bare), unit: 's/GiB', note: 'in-process, process.cpuUsage' },
      ];
      return figures;
    } finally {
      await server.stop();
      await rm(file, { force: true });
      await rm(dataDir, { recursive: true, force: true });
    }
  },
};

export default bench;
