/**
 * Group commit for the producer (infra/group-commit.ts): publish() calls that arrive while a send
 * is in flight leave together as the next send, one Produce request.
 *
 * Why: with an idempotent producer (one request in flight) every publish waited for the one
 * before it, and each was a Produce request of its own. Measured with 1 MiB images, 8 clients,
 * distributed mode (interleaved, 500 images each): Produce requests per image 4.2 → 2.1, CPU per
 * image 60 → 52 ms over every process on the path, 29.6 → 33.9 images/s.
 *
 * A caller's messages are never split across sends, and calls keep their order. Every caller of
 * a send settles with that send's outcome (a failed publish leaves its events in the outbox).
 */
import { GroupCommit } from '../group-commit.js';

export interface SendBatcherLimits {
  /** Messages per send (a single call with more goes alone). */
  maxMessages: number;
  /** Bytes of message values per send (a single call with more goes alone). */
  maxBytes: number;
}

interface Pending<M> {
  messages: M[];
  bytes: number;
  resolve(): void;
  reject(error: unknown): void;
}

export class SendBatcher<M> extends GroupCommit<Pending<M>> {
  constructor(
    private readonly send: (messages: M[]) => Promise<void>,
    private readonly sizeOf: (message: M) => number,
    private readonly limits: SendBatcherLimits,
  ) {
    super();
  }

  publish(messages: M[]): Promise<void> {
    if (messages.length === 0) return Promise.resolve();
    const bytes = messages.reduce((sum, m) => sum + this.sizeOf(m), 0);
    return new Promise<void>((resolve, reject) => this.enqueue({ messages, bytes, resolve, reject }));
  }

  /** The calls at the head of the queue that fit one send (at least one). */
  protected take(): Pending<M>[] {
    let count = 0;
    let bytes = 0;
    let n = 0;
    for (const p of this.queue) {
      if (n > 0 && (count + p.messages.length > this.limits.maxMessages || bytes + p.bytes > this.limits.maxBytes)) break;
      count += p.messages.length;
      bytes += p.bytes;
      n++;
    }
    return this.queue.splice(0, n);
  }

  protected async commit(batch: Pending<M>[]): Promise<void> {
    try {
      await this.send(batch.flatMap((p) => p.messages));
      for (const p of batch) p.resolve();
    } catch (error) {
      for (const p of batch) p.reject(error);
    }
  }
}
