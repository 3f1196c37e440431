/**
 * Streaming decompressors with limits, for hostile input.
 *
 * - gzip: node:zlib (multi-member streams are decoded member after member, like `gzip -dc`).
 * - xz / zstd / bzip2: the Debian command-line tools (`xz -dc`, `zstd -dc`, `bzip2 -dc`) in a
 *   child process reading stdin and writing stdout. Backpressure is end to end: we only read the
 *   child's stdout when our consumer asks, so the tool blocks on a full pipe instead of buffering.
 *   The child is SIGKILLed when the consumer stops early, on error and on abort; its stderr goes
 *   into the error message; a non-zero exit status is an error.
 *
 * Limits, checked on every output chunk before it is handed on:
 * - `maxOutputBytes`: total decompressed bytes;
 * - `maxRatio`: decompressed bytes / compressed bytes consumed so far, once the output passed a
 *   small grace (`ratioGraceBytes`, 1 MiB) so tiny inputs are not refused for a high ratio.
 * Both refusals stop the decompressor at once, so a gzip bomb (10 MiB → 10 GiB of zeros) costs
 * the reading and output up to the grace (the unpack stage's ratio floor, 1 GiB by default,
 * written as holes) and no more.
 */
import { spawn } from 'node:child_process';
import { pipeline, Readable } from 'node:stream';
import zlib from 'node:zlib';
import type { StreamCodec } from './detect-codec.js';
import { formatBytes, sanitizeForMessage, UnpackRefusedError } from './errors.js';

export interface DecompressLimits {
  /** Refuse once the decompressed output would exceed this many bytes. */
  maxOutputBytes: number;
  /** Refuse once output bytes exceed `maxRatio` × compressed input bytes (after the grace). */
  maxRatio: number;
}

export interface DecompressOptions extends DecompressLimits {
  /**
   * Output allowed before the ratio is enforced (the "ratio floor"). Default 1 MiB here; the
   * unpack stage passes its configured floor (PIR_UNPACK_RATIO_FLOOR, 1 GiB by default), so a
   * mostly-empty disk smaller than the floor is never taken for a bomb.
   */
  ratioGraceBytes?: number;
  /**
   * The denominator of the ratio: defaults to the bytes this decompressor pulled from `source`.
   * A nested decompressor (a gzip member inside an OVA) passes the bytes read from the uploaded
   * file instead, so the ratio is always "disk bytes per uploaded byte".
   */
  inputBytes?: () => number;
  /** Memory the xz / zstd decoder may use (dictionary / window). Default 512 MiB. */
  decoderMemoryLimitBytes?: number;
  signal?: AbortSignal;
  /** Called with warnings of a decoder that still succeeded (e.g. bzip2 "trailing garbage ignored"). */
  onWarning?: (message: string) => void;
  /** Names the data in messages, e.g. "the upload" or 'OVA member "disk1.vmdk"'. */
  what?: string;
}

export const DEFAULT_RATIO_GRACE_BYTES = 1024 * 1024;
export const DEFAULT_DECODER_MEMORY_LIMIT_BYTES = 512 * 1024 * 1024;
const ZLIB_CHUNK_BYTES = 128 * 1024;
const STDERR_KEEP_CHARS = 16 * 1024;

/**
 * Counts the bytes pulled through it and remembers the first error the underlying source threw
 * (so a consumer that wraps or replaces that error — a pipeline, writeHashedFile — can be
 * overruled). Closes the source when iteration stops early.
 */
export class CountingSource implements AsyncIterable<Uint8Array> {
  bytes = 0;
  error: unknown = undefined;
  failed = false;
  constructor(private readonly source: AsyncIterable<Uint8Array>) {}

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array, void, undefined> {
    // Only errors of the source's next() are recorded: a consumer may also throw *into* us
    // (Readable.from does iterator.throw(err) when its pipeline fails), which is not the source's fault.
    const it = this.source[Symbol.asyncIterator]();
    let finished = false;
    try {
      for (;;) {
        let r: IteratorResult<Uint8Array>;
        try {
          r = await it.next();
        } catch (error) {
          finished = true;
          this.failed = true;
          this.error = error;
          throw error;
        }
        if (r.done) {
          finished = true;
          return;
        }
        this.bytes += r.value.length;
        yield r.value;
      }
    } finally {
      if (!finished) await it.return?.();
    }
  }
}

function checkLimits(opts: DecompressLimits): void {
  if (!(opts.maxOutputBytes > 0) || !Number.isFinite(opts.maxOutputBytes)) {
    throw new TypeError(`maxOutputBytes must be a positive finite number, got ${opts.maxOutputBytes}`);
  }
  if (!(opts.maxRatio > 0) || Number.isNaN(opts.maxRatio)) {
    throw new TypeError(`maxRatio must be a positive number, got ${opts.maxRatio}`);
  }
}

export function tooLargeError(what: string, limit: number): UnpackRefusedError {
  return new UnpackRefusedError(
    'decompressed_too_large',
    `Unpacking ${what} produced more than ${formatBytes(limit)}, the largest disk image this service accepts. ` +
      'Upload a smaller image (for example a sparse qcow2 made with `qemu-img convert -O qcow2`), ' +
      'or ask the operator to raise the unpack output limit.',
  );
}

function ratioError(what: string, maxRatio: number, out: number, input: number, floor: number): UnpackRefusedError {
  return new UnpackRefusedError(
    'expansion_ratio',
    `Unpacking ${what} was stopped: it expanded to ${formatBytes(out)} from only ${formatBytes(input)} of upload, ` +
      `more than the allowed ${maxRatio}:1 ratio beyond the first ${formatBytes(floor)}, which is how decompression bombs look. ` +
      'If this is a genuine but mostly empty disk, convert it to a sparse-aware format ' +
      '(`qemu-img convert -O qcow2 disk.raw disk.qcow2`) and upload that uncompressed, ' +
      'or ask the operator to raise the expansion-ratio limit or its floor (PIR_MAX_EXPANSION_RATIO, PIR_UNPACK_RATIO_FLOOR).',
  );
}

/**
 * Passes `raw` on, refusing once the output exceeds `maxOutputBytes`, or `maxRatio` × the input
 * consumed so far after the first `ratioGraceBytes` of output. Checked before each chunk is
 * handed on, so a bomb is stopped before its excess reaches the consumer.
 */
export async function* limitOutput(
  raw: AsyncIterable<Uint8Array>,
  opts: DecompressOptions,
  inputBytes: () => number,
): AsyncGenerator<Uint8Array, void, undefined> {
  const what = opts.what ?? 'the upload';
  const grace = opts.ratioGraceBytes ?? DEFAULT_RATIO_GRACE_BYTES;
  let out = 0;
  for await (const chunk of raw) {
    out += chunk.length;
    if (out > opts.maxOutputBytes) throw tooLargeError(what, opts.maxOutputBytes);
    if (out > grace) {
      const input = Math.max(1, inputBytes());
      if (out > opts.maxRatio * input) throw ratioError(what, opts.maxRatio, out, input, grace);
    }
    opts.signal?.throwIfAborted();
    yield chunk;
  }
}

/**
 * Decompress `source` (one `codec` stream, possibly multi-member/multi-frame) and yield the output.
 * Throws `UnpackRefusedError` for corrupt/truncated data and exceeded limits; rethrows errors of
 * `source` unchanged; throws plain errors for environment failures (tool missing, killed, I/O).
 */
export async function* decompress(
  source: AsyncIterable<Uint8Array>,
  codec: StreamCodec,
  opts: DecompressOptions,
): AsyncGenerator<Uint8Array, void, undefined> {
  checkLimits(opts);
  opts.signal?.throwIfAborted();
  const what = opts.what ?? 'the upload';
  const counted = new CountingSource(source);
  const raw = codec === 'gzip' ? viaZlib(zlib.createGunzip({ chunkSize: ZLIB_CHUNK_BYTES }), 'gzip', counted, opts, what) : viaTool(codec, counted, opts, what);
  yield* limitOutput(raw, opts, opts.inputBytes ?? (() => counted.bytes));
}

/** Raw deflate (a zip member's data), with the same limits as decompress(). */
export async function* inflateRaw(source: AsyncIterable<Uint8Array>, opts: DecompressOptions): AsyncGenerator<Uint8Array, void, undefined> {
  checkLimits(opts);
  opts.signal?.throwIfAborted();
  const counted = new CountingSource(source);
  const raw = viaZlib(zlib.createInflateRaw({ chunkSize: ZLIB_CHUNK_BYTES }), 'zip', counted, opts, opts.what ?? 'the upload');
  yield* limitOutput(raw, opts, opts.inputBytes ?? (() => counted.bytes));
}

function corrupt(codec: string, what: string, detail: string): UnpackRefusedError {
  return new UnpackRefusedError(
    'corrupt_archive',
    `The ${codec} data of ${what} is corrupt or truncated (${sanitizeForMessage(detail) || 'no detail'}). ` +
      'Check that the upload completed and that the file decompresses locally (e.g. `' +
      `${codec === 'zip' ? 'unzip -t' : `${codec} -t`} FILE\`), then upload it again.`,
  );
}

function isZlibDataError(error: unknown): error is Error & { code: string } {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('Z_') && code !== 'Z_MEM_ERROR';
}

async function* viaZlib(z: zlib.Gunzip | zlib.InflateRaw, codec: string, src: CountingSource, opts: DecompressOptions, what: string): AsyncGenerator<Uint8Array, void, undefined> {
  const input = Readable.from(src, { highWaterMark: 1 });
  const onAbort = () => {
    const reason: unknown = opts.signal?.reason;
    input.destroy(reason instanceof Error ? reason : undefined);
    z.destroy(reason instanceof Error ? reason : undefined);
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  // Errors reach us through iterating z (pipeline destroys it with the first error).
  const out = pipeline(input, z, () => {});
  try {
    for await (const chunk of out) yield chunk as Uint8Array;
  } catch (error) {
    if (src.failed) throw src.error;
    if (opts.signal?.aborted) throw opts.signal.reason;
    if (isZlibDataError(error)) throw corrupt(codec, what, error.message);
    throw error;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    input.destroy();
    z.destroy();
  }
  if (src.failed) throw src.error;
  opts.signal?.throwIfAborted();
}

function toolCommand(codec: Exclude<StreamCodec, 'gzip'>, memLimit: number): [string, string[]] {
  const mib = Math.max(1, Math.floor(memLimit / (1024 * 1024)));
  switch (codec) {
    case 'xz':
      return ['xz', ['-dc', `--memlimit-decompress=${mib}MiB`]];
    case 'zstd':
      return ['zstd', ['-dc', '-q', '--no-progress', `--memory=${mib}MB`]];
    case 'bzip2':
      return ['bzip2', ['-dc']];
  }
}

const MEMORY_LIMIT_PATTERNS = [/memory usage limit/i, /requires too much memory/i, /window size .* too large/i, /frame requires/i];
const OUT_OF_MEMORY_PATTERNS = [/cannot allocate memory/i, /out of memory/i, /memory allocation failed/i];

async function* viaTool(
  codec: Exclude<StreamCodec, 'gzip'>,
  src: CountingSource,
  opts: DecompressOptions,
  what: string,
): AsyncGenerator<Uint8Array, void, undefined> {
  const memLimit = opts.decoderMemoryLimitBytes ?? DEFAULT_DECODER_MEMORY_LIMIT_BYTES;
  const [cmd, args] = toolCommand(codec, memLimit);
  const child = spawn(cmd, args, {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin', LC_ALL: 'C' },
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text: string) => {
    if (stderr.length < STDERR_KEEP_CHARS) stderr += text;
  });
  let spawnError: Error | undefined;
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('error', (error) => {
      spawnError ??= error;
      resolve({ code: null, signal: null });
    });
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  const alive = () => child.exitCode === null && child.signalCode === null && spawnError === undefined;
  const kill = () => {
    if (alive()) child.kill('SIGKILL');
  };
  const input = Readable.from(src, { highWaterMark: 1 });
  let feedError: (Error & { code?: string }) | undefined;
  pipeline(input, child.stdin, (error) => {
    if (!error) return;
    feedError = error;
    if (src.failed) kill(); // our upstream failed: the tool would only see a truncated stream
  });
  const onAbort = () => {
    kill();
    input.destroy();
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  let finished = false;
  try {
    try {
      for await (const chunk of child.stdout) yield chunk as Uint8Array;
    } catch (error) {
      if (src.failed) throw src.error;
      if (opts.signal?.aborted) throw opts.signal.reason;
      throw error;
    }
    const { code, signal } = await closed;
    finished = true;
    if (src.failed) throw src.error;
    opts.signal?.throwIfAborted();
    if (spawnError) {
      const hint = (spawnError as { code?: string }).code === 'ENOENT' ? ` (install it: apt-get install -y ${codec === 'xz' ? 'xz-utils' : codec})` : '';
      throw new Error(`Cannot run \`${cmd}\` to decompress ${what}: ${spawnError.message}${hint}`, { cause: spawnError });
    }
    const detail = sanitizeForMessage(firstComplaint(stderr));
    if (signal !== null) {
      throw new Error(`\`${cmd} -dc\` was killed by ${signal} while decompressing ${what}${detail ? `: ${detail}` : ''}`);
    }
    const warningOnly = codec === 'xz' && code === 2; // xz: 2 = "warning", the output is complete
    if (code !== 0 && !warningOnly) {
      if (OUT_OF_MEMORY_PATTERNS.some((re) => re.test(stderr))) {
        throw new Error(`\`${cmd} -dc\` ran out of memory decompressing ${what}: ${detail}`);
      }
      if (MEMORY_LIMIT_PATTERNS.some((re) => re.test(stderr))) {
        throw new UnpackRefusedError(
          'unsupported_archive',
          `The ${codec} data of ${what} needs more than ${formatBytes(memLimit)} of decoder memory (${detail}). ` +
            `Recompress it with a smaller dictionary/window (for example \`${codec === 'xz' ? 'xz -6' : 'zstd -19'}\` without --long or custom window sizes) and upload it again.`,
        );
      }
      throw corrupt(codec, what, detail || `exit status ${code}`);
    }
    if (feedError) {
      if (feedError.code === 'EPIPE') opts.onWarning?.(`${cmd} stopped reading ${what} before its end; trailing data was ignored`);
      else throw feedError;
    }
    if (detail) opts.onWarning?.(`${cmd}: ${detail}`);
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    kill();
    input.destroy();
    if (!finished) await closed; // reap the child before returning, even on early exit
  }
}

/**
 * What a decoder said first, with its continuation lines: bzip2 follows its complaint with a
 * "*Possible* reason" (an ioctl on a pipe) and advice about bzip2recover, which are noise in a
 * refusal message.
 */
export function firstComplaint(stderr: string): string {
  const lines = stderr.split('\n');
  const start = lines.findIndex((line) => line.trim() !== '');
  if (start === -1) return '';
  const kept = [lines[start]!];
  for (const line of lines.slice(start + 1)) {
    if (!/^\s/.test(line) || line.trim() === '') break;
    kept.push(line);
  }
  return kept.join(' ').replace(/\s*\*Possible\* reason follows\.?/, '');
}
