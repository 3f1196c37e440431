/**
 * The cost of telemetry (issue 9 point 8): ingest throughput (raw uploads) and the small-image
 * rate (1 MiB images, 8 clients) with tracing (OTLP over HTTP to a local sink that accepts and
 * drops; every auto-instrumentation on) and metrics (PIR_METRICS_PORT scraped every second) on,
 * versus off. Target: on ≥ 95% of off.
 *
 * Robust on a shared, loaded machine: both `pir serve` processes (off and on) run side by side
 * for the whole bench, each warmed up first, and the measurements interleave one operation at a
 * time in ABBA order (off, on, on, off, …), so a change of the machine's load hits both modes
 * alike. Each figure is the median over rounds; the verdict is on the median of the per-round
 * on/off ratios (a pair measured seconds apart), shown beside the medians themselves.
 * Beside the rates, the server's own CPU time (user + system, from /proc, worker threads
 * included) per ingested MiB and per small image: what telemetry adds to the work itself,
 * which the machine's load does not distort the way it distorts rates.
 * The main thread's own CPU per small image is shown too: it is the thread that saturates first
 * (the event loop runs every span, hook and log line), so its cost is what sets the rate.
 * PIR_BENCH_TELEMETRY_ROUNDS (default 8), PIR_BENCH_TELEMETRY_MIB (default 128) and
 * PIR_BENCH_TELEMETRY_SMALL (small images per client per round, default 8: 64 a round, about a
 * second on an idle machine; 3, i.e. 24 a round, was shorter than one span export cycle and one
 * scrape, so a round's ratio was mostly noise) scale it.
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { PirClient } from '../test/support/pir-client.js';
import { freePort, startPirProcess, type PirProcess } from '../test/support/pir-process.js';
import { smallImages, TOKEN, uploadOne } from './ingest.bench.js';
import { MiB, processCpuMs as cpuMs } from './limits.js';
import { mainThreadCpuMs } from './process-cpu.js';
import { median, type Bench, type Figure } from './report.js';

const ROUNDS = Number(process.env.PIR_BENCH_TELEMETRY_ROUNDS || 8);
const INGEST_MIB = Number(process.env.PIR_BENCH_TELEMETRY_MIB || 128);
const SMALL_PER_CLIENT = Number(process.env.PIR_BENCH_TELEMETRY_SMALL || 8);
type Mode = 'off' | 'on';

const bench: Bench = {
  name: 'telemetry cost: tracing + metrics on vs off (pir serve, interleaved)',
  async run(ctx) {
    const data = randomBytes(64 * MiB);
    let spansBytes = 0;
    const sink = createServer((req, res) => {
      req.on('data', (c: Buffer) => { spansBytes += c.length; });
      req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
    });
    sink.listen(0, '127.0.0.1');
    await once(sink, 'listening');
    const sinkUrl = `http://127.0.0.1:${(sink.address() as { port: number }).port}`;
    const servers = new Map<Mode, { pir: PirProcess; client: PirClient }>();
    let scraper: NodeJS.Timeout | undefined;
    const results = { off: { ingest: [] as number[], small: [] as number[] }, on: { ingest: [] as number[], small: [] as number[] } };
    const cpu = { off: { perMiB: [] as number[], perImage: [] as number[], mainPerImage: [] as number[] }, on: { perMiB: [] as number[], perImage: [] as number[], mainPerImage: [] as number[] } };
    try {
      for (const mode of ['off', 'on'] as const) {
        const port = await freePort();
        const env: Record<string, string> = { PIR_DATA_DIR: join(ctx.dir, `telemetry-${mode}`), PIR_ADMIN_TOKEN: TOKEN, PIR_PORT: String(port), PIR_LOG_LEVEL: 'info' };
        if (mode === 'on') {
          const metricsPort = await freePort();
          Object.assign(env, { OTEL_EXPORTER_OTLP_ENDPOINT: sinkUrl, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf', PIR_METRICS_PORT: String(metricsPort) });
          scraper = setInterval(() => { void fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text()).catch(() => undefined); }, 1000);
        }
        const pir = await startPirProcess('serve', env, join(ctx.dir, 'logs'), `serve-telemetry-${mode}`);
        const client = new PirClient(`http://127.0.0.1:${port}`, TOKEN);
        servers.set(mode, { pir, client });
        // warm-up: JIT, first files, first spans exported
        await uploadOne(client, 16 * MiB, data);
        await smallImages(client, data.subarray(0, MiB), 8, 4, 30);
      }
      const size = INGEST_MIB * MiB;
      for (let round = 0; round < ROUNDS; round++) {
        const order: Mode[] = round % 2 === 0 ? ['off', 'on'] : ['on', 'off'];
        for (const mode of order) {
          const { pir, client } = servers.get(mode)!;
          const c0 = cpuMs(pir.child.pid!);
          const t = await uploadOne(client, size, data);
          results[mode].ingest.push(size / MiB / (t.totalMs / 1000));
          cpu[mode].perMiB.push((cpuMs(pir.child.pid!) - c0) / INGEST_MIB);
        }
        for (const mode of [...order].reverse()) {
          const { pir, client } = servers.get(mode)!;
          const c0 = cpuMs(pir.child.pid!);
          const m0 = mainThreadCpuMs(pir.child.pid!);
          const small = await smallImages(client, data.subarray(0, MiB), 8, SMALL_PER_CLIENT, 30);
          results[mode].small.push(small.perSecond);
          cpu[mode].perImage.push((cpuMs(pir.child.pid!) - c0) / small.count);
          cpu[mode].mainPerImage.push((mainThreadCpuMs(pir.child.pid!) - m0) / small.count);
        }
        ctx.log(`round ${round + 1}: ingest off ${results.off.ingest.at(-1)!.toFixed(0)} / on ${results.on.ingest.at(-1)!.toFixed(0)} MiB/s; small off ${results.off.small.at(-1)!.toFixed(1)} / on ${results.on.small.at(-1)!.toFixed(1)} images/s`);
      }
    } finally {
      clearInterval(scraper);
      for (const { pir } of servers.values()) await pir.stop();
      sink.close();
    }
    const ratio = (k: 'ingest' | 'small') => median(results.on[k].map((v, i) => v / results.off[k][i]!));
    const spread = (xs: number[]) => `${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}`;
    const figures: Figure[] = [
      { name: `ingest ${INGEST_MIB} MiB raw, telemetry off (median of ${ROUNDS})`, value: median(results.off.ingest), unit: 'MiB/s', note: `range ${spread(results.off.ingest)}` },
      { name: `ingest ${INGEST_MIB} MiB raw, tracing + metrics on (median of ${ROUNDS})`, value: median(results.on.ingest), unit: 'MiB/s', note: `range ${spread(results.on.ingest)}` },
      { name: 'ingest: on/off, median of the paired rounds', value: ratio('ingest') * 100, unit: '%', atLeast: 95 },
      { name: '1 MiB images, 8 clients, telemetry off (median)', value: median(results.off.small), unit: 'images/s', note: `range ${spread(results.off.small)}` },
      { name: '1 MiB images, 8 clients, tracing + metrics on (median)', value: median(results.on.small), unit: 'images/s', note: `range ${spread(results.on.small)}` },
      { name: 'small images: on/off, median of the paired rounds', value: ratio('small') * 100, unit: '%', atLeast: 95 },
      { name: 'server CPU per ingested MiB, off / on (median)', value: median(cpu.on.perMiB), unit: 'ms', note: `off ${median(cpu.off.perMiB).toFixed(2)} ms: on is ${((median(cpu.on.perMiB) / median(cpu.off.perMiB) - 1) * 100).toFixed(0)}% more` },
      { name: 'server CPU per small image, off / on (median)', value: median(cpu.on.perImage), unit: 'ms', note: `off ${median(cpu.off.perImage).toFixed(1)} ms: on is ${((median(cpu.on.perImage) / median(cpu.off.perImage) - 1) * 100).toFixed(0)}% more` },
      { name: 'server main thread CPU per small image, off / on (median)', value: median(cpu.on.mainPerImage), unit: 'ms', note: `off ${median(cpu.off.mainPerImage).toFixed(1)} ms: on is ${((median(cpu.on.mainPerImage) / median(cpu.off.mainPerImage) - 1) * 100).toFixed(0)}% more` },
      { name: 'OTLP bytes the sink received (tracing really on)', value: spansBytes / 1024, unit: 'KiB', atLeast: 1 },
    ];
    return figures;
  },
};

export default bench;
