import { pino, type Logger } from 'pino';
import { traceFields } from '../core/trace-context.js';

/**
 * JSON logs on stdout; every line of a job carries image_id and project_id (and run/stage) via
 * child loggers, and every line logged inside a span its trace_id and span_id.
 *
 * Written asynchronously (pino's default is one write per line, on the event loop): a line is
 * written as soon as the write before it is done, on libuv's threads, and the lines logged
 * meanwhile go out together. A small image logs ~13 lines; written one by one
 * they cost the event loop a syscall each (~5% of it with 8 uploads in flight). On exit, even
 * after an uncaught error, pino writes what is left synchronously; only a SIGKILL can lose the
 * lines of the last write in flight.
 */
export function createLogger(level: string, role: string): Logger {
  return pino(
    { level, base: { pid: process.pid, role }, timestamp: pino.stdTimeFunctions.isoTime, mixin: traceFields },
    pino.destination({ dest: 1, sync: false }),
  );
}
