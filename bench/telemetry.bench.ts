/**
 * The cost of telemetry, in one run on `pir serve`: ingest throughput (256 MiB raw uploads) and
 * the small-image rate (1 MiB images, 8 clients) with tracing (OTLP over HTTP to a local sink
 * that accepts and drops) and metrics (PIR_METRICS_PORT scraped every second) on, versus off.
 * Runs alternate off/on to spread the machine's drift over both. Target: on ≥ 95% of off.
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { PirClient } from '../test/support/pir-client.js';
import { freePort, startPirProcess } from '../test/support/pir-process.js';
import { smallImages, TOKEN, uploadOne } from './ingest.bench.js';
import { MiB } from './limits.js';
import { median, type Bench, type Figure } from './report.js';
import { randomBytes } from 'node:crypto';

const ROUNDS = 3;

const bench: Bench = {
  name: 'telemetry cost: tracing + metrics on vs off (pir serve)',
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
    const results = { off: { ingest: [] as number[], small: [] as number[] }, on: { ingest: [] as number[], small: [] as number[] } };
    try {
      for (let round = 0; round < ROUNDS; round++) {
        for (const mode of ['off', 'on'] as const) {
          const port = await freePort();
          const env: Record<string, string> = { PIR_DATA_DIR: join(ctx.dir, `telemetry-${mode}-${round}`), PIR_ADMIN_TOKEN: TOKEN, PIR_PORT: String(port), PIR_LOG_LEVEL: 'info' };
          let scraper: NodeJS.Timeout | undefined;
          if (mode === 'on') {
            const metricsPort = await freePort();
            Object.assign(env, { OTEL_EXPORTER_OTLP_ENDPOINT: sinkUrl, PIR_METRICS_PORT: String(metricsPort) });
            scraper = setInterval(() => { void fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text()).catch(() => undefined); }, 1000);
          }
          const pir = await startPirProcess('serve', env, join(ctx.dir, 'logs'), `serve-${mode}-${round}`);
          try {
            const client = new PirClient(`http://127.0.0.1:${port}`, TOKEN);
            const size = 256 * MiB;
            const t = await uploadOne(client, size, data);
            results[mode].ingest.push(size / MiB / (t.totalMs / 1000));
            const small = await smallImages(client, data.subarray(0, MiB), 8, 10, 30);
            results[mode].small.push(small.perSecond);
            ctx.log(`round ${round + 1} ${mode}: ingest ${results[mode].ingest.at(-1)!.toFixed(0)} MiB/s, small ${small.perSecond.toFixed(1)} images/s`);
          } finally {
            clearInterval(scraper);
            await pir.stop();
          }
        }
      }
    } finally {
      sink.close();
    }
    const off = { ingest: median(results.off.ingest), small: median(results.off.small) };
    const on = { ingest: median(results.on.ingest), small: median(results.on.small) };
    const figures: Figure[] = [
      { name: 'ingest 256 MiB raw, telemetry off (median)', value: off.ingest, unit: 'MiB/s' },
      { name: 'ingest 256 MiB raw, tracing + metrics on', value: on.ingest, unit: 'MiB/s', limit: off.ingest, targetRatio: 0.95 },
      { name: '1 MiB images, 8 clients, telemetry off', value: off.small, unit: 'images/s' },
      { name: '1 MiB images, 8 clients, tracing + metrics on', value: on.small, unit: 'images/s', limit: off.small, targetRatio: 0.95 },
      { name: 'OTLP bytes the sink received (tracing really on)', value: spansBytes / 1024, unit: 'KiB', atLeast: 1 },
    ];
    return figures;
  },
};

export default bench;
