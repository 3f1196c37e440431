/**
 * W3C trace context for events and jobs, through the OpenTelemetry API only (a no-op until the
 * SDK is started by infra/telemetry/tracing.ts): the pipeline carries `traceparent` strings
 * from the request that caused an event to every stage the event sets off.
 */
import { context, propagation, ROOT_CONTEXT, trace, type Context, type Link, type Span, SpanKind, SpanStatusCode } from '@opentelemetry/api';

export const tracer = () => trace.getTracer('pir');

/** The traceparent of the active span, if any is recording. */
export function currentTraceparent(): string | undefined {
  if (!trace.getSpan(context.active())?.spanContext()) return undefined;
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier.traceparent;
}

/** The context a traceparent names (root when none). */
export function contextFrom(traceparent: string | undefined): Context {
  return traceparent ? propagation.extract(ROOT_CONTEXT, { traceparent }) : ROOT_CONTEXT;
}

/**
 * Runs `work` in a consumer span for a message created in `traceparent`'s context: the span is
 * the producer's child (one message processed at a time, which the messaging conventions
 * allow) and also links to it, as the conventions ask of consumers.
 */
export async function inConsumerSpan<T>(name: string, traceparent: string | undefined, attributes: Record<string, string | number | boolean>, work: (span: Span) => Promise<T>): Promise<T> {
  const parent = contextFrom(traceparent);
  const producer = trace.getSpanContext(parent);
  const links: Link[] = producer ? [{ context: producer }] : [];
  return tracer().startActiveSpan(name, { kind: SpanKind.CONSUMER, attributes, links }, parent, (span) => spanning(span, () => work(span)));
}

/** Runs `work` in `span`, which ends either way; a throw is recorded on it as an error, and goes on. */
async function spanning<T>(span: Span, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    span.recordException(error as Error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error)?.message });
    throw error;
  } finally {
    span.end();
  }
}

/**
 * Runs `work` in a client span (an outgoing request PIR makes, e.g. a webhook delivery) that
 * continues `traceparent`'s trace; `work` sends the span's own traceparent on, so the receiver
 * hangs its spans from this request.
 */
export async function inClientSpan<T>(name: string, traceparent: string | null | undefined, attributes: Record<string, string | number | boolean>, work: (span: Span) => Promise<T>): Promise<T> {
  return tracer().startActiveSpan(name, { kind: SpanKind.CLIENT, attributes }, contextFrom(traceparent ?? undefined), async (span) => {
    try {
      return await work(span);
    } finally {
      span.end();
    }
  });
}

/** trace_id and span_id of the active span, for log lines (empty when not tracing). */
export function traceFields(): { trace_id?: string; span_id?: string } {
  const sc = trace.getSpan(context.active())?.spanContext();
  if (!sc || !trace.isSpanContextValid(sc)) return {};
  return { trace_id: sc.traceId, span_id: sc.spanId };
}

/** A failure a background step recorded on its image instead of throwing it (its request answered 202 already). */
export interface RecordedFailure {
  code: string;
  message: string;
}

/**
 * Runs the background part of a request that answered 202 (a web-download, a location's
 * registration) in a span of the request's trace: `traceparent`'s when the work runs as a job,
 * else the active context's. The failure `work` returns sets the span's error status and
 * pir.error.code, so the trace shows why the image was killed; a throw does too, and goes on.
 */
export async function inBackgroundSpan(name: string, attributes: Record<string, string | number | boolean>, work: () => Promise<RecordedFailure | null>, traceparent?: string): Promise<void> {
  const parent = traceparent ? contextFrom(traceparent) : context.active();
  return tracer().startActiveSpan(name, { attributes }, parent, (span) => spanning(span, async () => {
    const failure = await work();
    if (failure) {
      span.setAttribute('pir.error.code', failure.code);
      span.setStatus({ code: SpanStatusCode.ERROR, message: failure.message });
    }
  }));
}
