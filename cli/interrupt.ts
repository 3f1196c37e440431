/**
 * What a signal must not leave behind: a progress bar that hid the cursor and turned off line
 * wrap, a tus upload holding its staged bytes and the image `saving` for a day, and an image a
 * cut upload left without data, unexplained. On the first SIGINT (Ctrl-C), SIGTERM or SIGHUP,
 * every live cleanup runs (the bars give the terminal back), the endings are given a few seconds
 * (ending the tus upload), each note says what was left, and pir exits 128 + the signal's number
 * (130, 143, 129), as a shell expects of a command a signal ended. A second signal cuts the wait.
 */
const cleanups = new Set<() => void>();
const endings = new Set<() => Promise<void>>();
const notes = new Set<() => string | null>();
const SIGNALS = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;
/** How long the endings may take: a server that does not answer must not hold the exit. */
export const ENDINGS_MS = 5000;
let installed = false;
let stopping = false;
let hurry: () => void = () => {};

function install(): void {
  if (installed) return;
  installed = true;
  for (const [signal, code] of Object.entries(SIGNALS)) process.on(signal, () => void stop(signal, code));
}

async function stop(signal: string, code: number): Promise<void> {
  if (stopping) return hurry();
  stopping = true;
  // Taken now: the work the endings stop lets go of its notes as it unwinds.
  const noted = [...notes];
  for (const cleanup of cleanups) {
    try { cleanup(); } catch { /* the others still run */ }
  }
  write(`\npir: interrupted${signal === 'SIGINT' ? '' : ` (${signal})`}\n`);
  const hurried = new Promise<void>((resolve) => { hurry = resolve; });
  const timer = new Promise<void>((resolve) => setTimeout(resolve, ENDINGS_MS));
  await Promise.race([Promise.allSettled([...endings].map((end) => end())), hurried, timer]);
  for (const note of noted) {
    const text = note();
    if (text) write(`pir: ${text}\n`);
  }
  process.exit(code);
}

/** True once a signal is being handled: the command's own failure (its upload cut) is not news then. */
export function signalled(): boolean {
  return stopping;
}

/** After SIGHUP the terminal may be gone: a failed write must not stop the exit. */
function write(text: string): void {
  try { process.stderr.write(text); } catch { /* nowhere to say it */ }
}

/** Runs `cleanup` if pir is interrupted before the returned function is called. */
export function cleanupOnInterrupt(cleanup: () => void): () => void {
  install();
  cleanups.add(cleanup);
  return () => { cleanups.delete(cleanup); };
}

/** Awaits `end` (at most ENDINGS_MS, all endings together) if pir is interrupted before the returned function is called; the notes are printed after. */
export function endOnInterrupt(end: () => Promise<void>): () => void {
  install();
  endings.add(end);
  return () => { endings.delete(end); };
}

/** Prints `note()` (unless it returns null) if pir is interrupted before the returned function is called. */
export function noteOnInterrupt(note: () => string | null): () => void {
  install();
  notes.add(note);
  return () => { notes.delete(note); };
}
