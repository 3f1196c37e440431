/**
 * Tracing, configured by the standard OTEL_* variables and off unless OTEL_TRACES_EXPORTER or
 * OTEL_EXPORTER_OTLP_ENDPOINT is set (then the OpenTelemetry Node SDK exports as they say:
 * otlp by default, OTEL_EXPORTER_OTLP_* for where and how). OTEL_TRACES_EXPORTER=pir-test-file
 * writes finished spans as JSON lines to PIR_TEST_SPANS_FILE (tests read them across processes).
 *
 * Besides PIR's own spans (dispatcher, stages), the auto-instrumentations: HTTP server spans by
 * @fastify/otel, kafkajs produce/process spans, ioredis and mongodb client spans, and BullMQ's
 * own telemetry (bullmq-otel, handed to the job queue through bullmq-telemetry.ts). PIR is ESM, so
 * the modules are patched by import-in-the-middle's loader hook: `startTracing` registers it
 * (for those modules only) and must run before they are first imported; the server roles
 * import the runtime only afterwards (cli/server-commands.ts).
 */
import { appendFileSync } from 'node:fs';
import { register } from 'node:module';
import { createAddHookMessageChannel } from 'import-in-the-middle';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { SimpleSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace';
import { FastifyOtelInstrumentation } from '@fastify/otel';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { KafkaJsInstrumentation } from '@opentelemetry/instrumentation-kafkajs';
import { MongoDBInstrumentation } from '@opentelemetry/instrumentation-mongodb';
import { BullMQOtel } from 'bullmq-otel';
import { setBullmqTelemetry } from './bullmq-telemetry.js';
import { redactUrl } from '../../api/http-hygiene.js';

import { tracingWanted, type Env } from './tracing-wanted.js';

/** The packages the instrumentations patch: the loader hook wraps these and nothing else. */
const INSTRUMENTED = ['fastify', 'kafkajs', 'ioredis', 'mongodb'];

/**
 * Starts the SDK when configured, before the instrumented modules are imported; returns its
 * shutdown (which flushes), or null when off.
 */
export async function startTracing(role: string, env: Env = process.env): Promise<(() => Promise<void>) | null> {
  if (!tracingWanted(env)) return null;
  // Only traces: PIR's metrics are Prometheus (/metrics), its logs pino on stdout.
  env.OTEL_METRICS_EXPORTER ??= 'none';
  env.OTEL_LOGS_EXPORTER ??= 'none';
  const testFile = env.OTEL_TRACES_EXPORTER === 'pir-test-file' ? env.PIR_TEST_SPANS_FILE : undefined;
  if (env.OTEL_TRACES_EXPORTER === 'pir-test-file' && !testFile) throw new Error('OTEL_TRACES_EXPORTER=pir-test-file needs PIR_TEST_SPANS_FILE');
  const { registerOptions, waitForAllMessagesAcknowledged } = createAddHookMessageChannel();
  register('import-in-the-middle/hook.mjs', import.meta.url, { ...registerOptions, data: { ...registerOptions.data, include: INSTRUMENTED } } as typeof registerOptions);
  const sdk = new NodeSDK({
    serviceName: env.OTEL_SERVICE_NAME || `pir-${role}`,
    instrumentations: [
      new FastifyOtelInstrumentation({
        registerOnInitialization: true,
        // One span per request: a span for each Fastify hook (auth, quotas, 100-continue…)
        // tripled the spans of a request, and one for its handler (named after the plugin's
        // source text) doubled them, for no operator value; on small images each span costs.
        instrumentHooks: false,
        instrumentHandler: false,
        // The event stream too: it hijacks its reply and can last hours, so its span never ended.
        ignorePaths: (route) => route.url === '/healthz' || route.url === '/readyz' || route.url === '/metrics' || route.url.startsWith('/ops') || route.url === '/v2/events',
        // Named by method and route pattern (never the URL), as PIR's own server span was.
        // url.path is recorded as logged: share-link tokens and secret query values redacted.
        requestHook: (span, request) => {
          span.updateName(`${request.method} ${request.routeOptions.url ?? 'unmatched'}`);
          span.setAttribute('url.path', redactUrl(request.url));
        },
      }),
      new KafkaJsInstrumentation(),
      // Only calls made inside a trace: BullMQ's and the relay's idle polling would be noise.
      new IORedisInstrumentation({ requireParentSpan: true }),
      new MongoDBInstrumentation({ requireParentSpan: true }),
    ],
    ...(testFile ? { spanProcessors: [new SimpleSpanProcessor({ exporter: new JsonLinesExporter(testFile) })] } : {}),
  });
  sdk.start();
  await waitForAllMessagesAcknowledged();
  setBullmqTelemetry(new BullMQOtel({ tracerName: 'bullmq' }));
  return () => sdk.shutdown();
}

/** Test exporter: one JSON object per finished span, appended to a file. */
class JsonLinesExporter implements SpanExporter {
  constructor(private readonly path: string) {}

  export(spans: ReadableSpan[], done: (result: { code: 0 | 1; error?: Error }) => void): void {
    try {
      appendFileSync(this.path, spans.map((s) => `${JSON.stringify(toJson(s))}\n`).join(''));
      done({ code: 0 });
    } catch (error) {
      done({ code: 1, error: error as Error });
    }
  }

  async shutdown(): Promise<void> {}
}

export interface SpanRecord {
  name: string;
  /** The instrumentation that made the span ('pir', '@fastify/otel', …). */
  scope: string;
  service: string;
  trace_id: string;
  span_id: string;
  parent_span_id: string | null;
  kind: number;
  status: number;
  attributes: Record<string, unknown>;
  links: { trace_id: string; span_id: string }[];
  start_ms: number;
  end_ms: number;
}

function toJson(s: ReadableSpan): SpanRecord {
  const ms = (t: [number, number]) => t[0] * 1000 + t[1] / 1e6;
  return {
    name: s.name,
    scope: s.instrumentationScope.name,
    service: String(s.resource.attributes['service.name'] ?? ''),
    trace_id: s.spanContext().traceId,
    span_id: s.spanContext().spanId,
    parent_span_id: s.parentSpanContext?.spanId ?? null,
    kind: s.kind,
    status: s.status.code,
    attributes: s.attributes,
    links: s.links.map((l) => ({ trace_id: l.context.traceId, span_id: l.context.spanId })),
    start_ms: ms(s.startTime),
    end_ms: ms(s.endTime),
  };
}
