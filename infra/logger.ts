import { pino, type Logger } from 'pino';
import { traceFields } from '../core/trace-context.js';

/**
 * JSON logs on stdout; every line of a job carries image_id and project_id (and run/stage) via
 * child loggers, and every line logged inside a span its trace_id and span_id.
 */
export function createLogger(level: string, role: string): Logger {
  return pino({ level, base: { pid: process.pid, role }, timestamp: pino.stdTimeFunctions.isoTime, mixin: traceFields });
}
