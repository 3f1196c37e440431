/**
 * The loop both group commits share (infra/mongo/group-writer.ts, infra/kafka/send-batcher.ts):
 * callers queue work; one batch is in flight at a time, and whatever queued meanwhile leaves as
 * the next. No timer: a lone caller's work leaves at the next turn of the event loop, and under
 * load the batch grows by itself.
 */
export abstract class GroupCommit<P> {
  protected readonly queue: P[] = [];
  private running = false;
  private scheduled = false;

  /** The queued items that go out together next, taken off the queue (none: nothing to do). */
  protected abstract take(): P[];
  /** Sends one batch and settles each item's caller; never throws. */
  protected abstract commit(batch: P[]): Promise<void>;

  protected enqueue(item: P): void {
    this.queue.push(item);
    this.schedule();
  }

  private schedule(): void {
    if (this.running || this.scheduled || this.queue.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.running) return;
    const batch = this.take();
    if (batch.length === 0) return;
    this.running = true;
    try {
      await this.commit(batch);
    } finally {
      this.running = false;
      this.schedule();
    }
  }
}
