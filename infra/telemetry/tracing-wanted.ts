/**
 * Whether tracing is configured (OTEL_TRACES_EXPORTER or an OTLP endpoint, and not disabled).
 * Apart from tracing.ts so a server that does not trace never loads the OpenTelemetry SDK
 * (measured: an idle `pir serve` 158 → 140 MiB resident).
 */
export type Env = Record<string, string | undefined>;

export function tracingWanted(env: Env = process.env): boolean {
  const exporter = env.OTEL_TRACES_EXPORTER;
  if (exporter === 'none' || env.OTEL_SDK_DISABLED === 'true') return false;
  return Boolean(exporter || env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}
