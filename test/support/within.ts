/** Settles with the promise's outcome, or 'still waiting' after `ms` (for tests that a wait ends). */
export function within<T>(promise: Promise<T>, ms: number): Promise<{ value?: T; error?: unknown } | 'still waiting'> {
  return Promise.race([
    promise.then((value) => ({ value }), (error: unknown) => ({ error })),
    new Promise<'still waiting'>((resolve) => setTimeout(() => resolve('still waiting'), ms).unref()),
  ]);
}
