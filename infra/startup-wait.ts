/**
 * A distributed process's start-up waits for the services it needs: when PIR is started before
 * (or at the same moment as) its MongoDB-wire server or Kafka, on a machine booting or a
 * deployment rolling out, the first connection is refused or dropped. Without a wait the process
 * died on the first refusal (MongoDB after 5 s, Kafka after its client's ~15 s of retries), and
 * two processes creating a fresh database's collections at once could see FerretDB drop a
 * connection. Each start-up step that reaches a service runs through `until`, which retries
 * what looks like an unreachable service until one shared deadline, and gives up with an error
 * that names the service. Anything else (a bad password, a refused command) fails at once.
 */
import type { Logger } from 'pino';
import { isUnreachable } from './unreachable.js';

/** A service start-up waits for, and the setting that says where it is. */
export interface NeededService {
  name: string;
  setting: string;
}

export const MONGODB: NeededService = { name: 'the MongoDB-wire server', setting: 'PIR_MONGODB_URL' };
export const KAFKA: NeededService = { name: 'Kafka', setting: 'PIR_KAFKA_BROKERS' };

/** The service did not answer before the start-up deadline. */
export class ServiceUnreachableError extends Error {
  override name = 'ServiceUnreachableError';
  constructor(readonly service: NeededService, readonly waitedSeconds: number, override readonly cause: unknown) {
    super(`${service.name} did not answer within ${waitedSeconds} s of start-up (last error: ${describeCause(cause)}). `
      + `Is it running where ${service.setting} says? PIR_STARTUP_WAIT_SECONDS sets how long start-up waits.`);
  }
}

function describeCause(cause: unknown): string {
  return cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
}

const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 5000;

export class StartupWait {
  private readonly deadlineAt: number;

  /** `seconds`: how long start-up as a whole may wait (0: fail on the first refusal). */
  constructor(
    private readonly seconds: number,
    private readonly log: Logger,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    private readonly now: () => number = Date.now,
  ) {
    this.deadlineAt = now() + seconds * 1000;
  }

  /** Runs `step` (which must be safe to run again after it failed) until it succeeds or the service is given up on. */
  async until<T>(service: NeededService, step: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        const result = await step();
        if (attempt > 1) this.log.info({ service: service.name, attempts: attempt }, `${service.name} answered; start-up goes on`);
        return result;
      } catch (error) {
        if (!isUnreachable(error)) throw error;
        const left = this.deadlineAt - this.now();
        if (left <= 0) throw new ServiceUnreachableError(service, this.seconds, error);
        const delayMs = Math.min(FIRST_RETRY_MS * 2 ** (attempt - 1), MAX_RETRY_MS, left);
        this.log.warn({ service: service.name, attempt, retryInMs: delayMs, cause: describeCause(error) }, `waiting for ${service.name}`);
        await this.sleep(delayMs);
      }
    }
  }
}
