/**
 * A bound on long-lived requests per key (GET /v2/events per user and project): each open one
 * holds a slot until it ends. Counted in this process only: what one stream costs (a socket, a
 * listener run on every event, timers) is this process's.
 */
export class StreamSlots {
  private readonly open = new Map<string, number>();

  constructor(readonly perKey: number) {}

  /** A slot for `key`, and the function that gives it back (once, however often it is called); null when `key` holds all its slots. */
  take(key: string): (() => void) | null {
    const held = this.open.get(key) ?? 0;
    if (held >= this.perKey) return null;
    this.open.set(key, held + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.open.get(key) ?? 1) - 1;
      if (left > 0) this.open.set(key, left);
      else this.open.delete(key);
    };
  }

  /** Slots held for `key` now. */
  held(key: string): number {
    return this.open.get(key) ?? 0;
  }
}
