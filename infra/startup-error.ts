/** A start that cannot go on, said in one line a person can act on (the CLI prints it and exits 1). */
export class StartupError extends Error {
  override name = 'StartupError';
}
