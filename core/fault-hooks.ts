/**
 * Test-only fault injection (PIR_TEST_FAULTS). The e2e tests use it to kill a process at the
 * worst moment, e.g. right after a manifest write and before the outbox relay publishes.
 */
export class FaultHooks {
  private readonly exitAfterWrite: Set<string>;

  constructor(faults: string[]) {
    this.exitAfterWrite = new Set(
      faults.filter((f) => f.startsWith('exit-after-manifest-write:')).map((f) => f.slice('exit-after-manifest-write:'.length)),
    );
  }

  static none(): FaultHooks {
    return new FaultHooks([]);
  }

  afterManifestWrite(eventTypes: string[]): void {
    if (eventTypes.some((t) => this.exitAfterWrite.has(t))) {
      process.stderr.write(`PIR_TEST_FAULTS: exiting after the manifest write of ${eventTypes.join(', ')}\n`);
      process.kill(process.pid, 'SIGKILL');
    }
  }
}
