/**
 * BullMQ's own telemetry (bullmq-otel) while tracing is on: set by tracing.ts when the SDK starts,
 * read by the job queue for its queues and workers. A module of its own so the queue does not
 * load the SDK when tracing is off.
 */
import type { Telemetry } from 'bullmq';

let telemetry: Telemetry | undefined;

export function setBullmqTelemetry(value: Telemetry | undefined): void {
  telemetry = value;
}

/** `{ telemetry }` for BullMQ's options while tracing is on, else nothing. */
export function bullmqTelemetryOption(): { telemetry?: Telemetry } {
  return telemetry ? { telemetry } : {};
}
