/**
 * A read that began after the call: `read()` resolves with the result of a load started after
 * it was called, and every caller who asks while a load runs shares the next one (the running
 * one may have begun before their call, so it might miss a write they must see). Under load many
 * callers cost one read, and none gets a result older than its call.
 */
export class FreshRead<T> {
  private running: Promise<T> | null = null;
  private next: Promise<T> | null = null;

  constructor(private readonly load: () => Promise<T>) {}

  read(): Promise<T> {
    if (!this.running) return this.start();
    this.next ??= this.running.then(() => undefined, () => undefined).then(() => {
      this.next = null;
      return this.start();
    });
    return this.next;
  }

  private start(): Promise<T> {
    const load = this.load().finally(() => {
      if (this.running === load) this.running = null;
    });
    this.running = load;
    return load;
  }
}
