import { pino, type Logger } from 'pino';

/** JSON logs on stdout; every line of a job carries image_id (and run/stage) via child loggers. */
export function createLogger(level: string, role: string): Logger {
  return pino({ level, base: { pid: process.pid, role }, timestamp: pino.stdTimeFunctions.isoTime });
}
