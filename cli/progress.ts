/**
 * Progress on stderr: a cli-progress bar (bytes, rate, ETA) on a terminal, and plain periodic
 * lines otherwise (CI logs, pipes), so stdout stays clean for results.
 */
import cliProgress from 'cli-progress';
import { humanBytes, humanDuration } from './output.js';
import { cleanupOnInterrupt } from './interrupt.js';

export interface Progress {
  update(done: number): void;
  /** Stops the bar and prints the closing line. */
  finish(message?: string): void;
  /** Stops without a closing line (on failure). */
  stop(): void;
}

export interface ProgressOptions {
  label: string;
  total: number | null;
  /** Bytes already there before this run (a resumed download): not counted in the rate. */
  start?: number;
  stream?: NodeJS.WriteStream;
  /** Plain mode: seconds between lines. */
  everySeconds?: number;
}

export function isTerminal(stream: NodeJS.WriteStream = process.stderr): boolean {
  return Boolean(stream.isTTY) && process.env.TERM !== 'dumb';
}

export function createProgress(opts: ProgressOptions): Progress {
  const stream = opts.stream ?? process.stderr;
  return isTerminal(stream) ? barProgress(opts, stream) : lineProgress(opts, stream);
}

function rateText(bytes: number, seconds: number): string {
  return seconds > 0 ? `${humanBytes(bytes / seconds)}/s` : '-';
}

function barProgress(opts: ProgressOptions, stream: NodeJS.WriteStream): Progress {
  const t0 = performance.now();
  const start = opts.start ?? 0;
  const total = opts.total ?? 0;
  const bar = new cliProgress.SingleBar({
    stream,
    format: `${opts.label} {bar} {percentage}% | {doneH}/{totalH} | {rateH} | ETA {etaH}`,
    barCompleteChar: '\u2588',
    barIncompleteChar: '\u2591',
    hideCursor: true,
    clearOnComplete: false,
    fps: 10,
  });
  const payload = (done: number) => {
    const seconds = (performance.now() - t0) / 1000;
    const rate = seconds > 0 ? (done - start) / seconds : 0;
    return { doneH: humanBytes(done), totalH: opts.total === null ? '?' : humanBytes(total), rateH: rateText(done - start, seconds), etaH: rate > 0 && opts.total !== null ? humanDuration((total - done) / rate) : '?' };
  };
  bar.start(Math.max(total, 1), start, payload(start));
  const forget = cleanupOnInterrupt(() => bar.stop()); // gives the cursor back on Ctrl-C
  let last = start;
  return {
    update(done) { last = done; bar.update(done, payload(done)); },
    finish(message) {
      bar.update(last, payload(last));
      bar.stop();
      forget();
      if (message) stream.write(message + '\n');
    },
    stop() { bar.stop(); forget(); },
  };
}

function lineProgress(opts: ProgressOptions, stream: NodeJS.WriteStream): Progress {
  const t0 = performance.now();
  const start = opts.start ?? 0;
  let last = start;
  const every = (opts.everySeconds ?? 2) * 1000;
  const line = () => {
    const seconds = (performance.now() - t0) / 1000;
    const pct = opts.total ? ` (${Math.floor((last / opts.total) * 100)}%)` : '';
    const rate = (last - start) / Math.max(seconds, 1e-3);
    const eta = opts.total && rate > 0 ? `, ETA ${humanDuration((opts.total - last) / rate)}` : '';
    stream.write(`${opts.label}: ${humanBytes(last)}${opts.total !== null ? ` of ${humanBytes(opts.total)}` : ''}${pct}, ${rateText(last - start, seconds)}${eta}\n`);
  };
  const timer = setInterval(line, every);
  timer.unref();
  return {
    update(done) { last = done; },
    finish(message) {
      clearInterval(timer);
      if (message) stream.write(message + '\n');
    },
    stop() { clearInterval(timer); },
  };
}

/** "2.0 GiB in 5.1 s (401.2 MiB/s)" */
export function summary(bytes: number, seconds: number): string {
  return `${humanBytes(bytes)} in ${seconds.toFixed(1)} s (${rateText(bytes, seconds)})`;
}
