/**
 * What Ctrl-C (SIGINT) must not leave behind: a progress bar that hid the cursor and turned off
 * line wrap, and an image a cut upload left without data, unexplained. On the first SIGINT,
 * every live cleanup runs (the bars give the terminal back), each note says what was left, and
 * pir exits 130, as a shell expects of a command interrupted by it.
 */
const cleanups = new Set<() => void>();
const notes = new Set<() => string>();
let installed = false;

function install(): void {
  if (installed) return;
  installed = true;
  process.once('SIGINT', () => {
    for (const cleanup of cleanups) {
      try { cleanup(); } catch { /* the others still run */ }
    }
    process.stderr.write('\npir: interrupted\n');
    for (const note of notes) process.stderr.write(`pir: ${note()}\n`);
    process.exit(130);
  });
}

/** Runs `cleanup` if pir is interrupted before the returned function is called. */
export function cleanupOnInterrupt(cleanup: () => void): () => void {
  install();
  cleanups.add(cleanup);
  return () => { cleanups.delete(cleanup); };
}

/** Prints `note()` if pir is interrupted before the returned function is called. */
export function noteOnInterrupt(note: () => string): () => void {
  install();
  notes.add(note);
  return () => { notes.delete(note); };
}
