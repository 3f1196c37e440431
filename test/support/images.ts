// Test fixtures built with the real qemu-img, plus a tiny file-backed reader.
// Shared by the format unit tests and (later) the pipeline e2e tests.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { RandomAccessReader } from '../../formats/index.js';

const run = promisify(execFile);

/** Make sure qemu-img exists, installing qemu-utils if needed (retrying while another dpkg holds the lock). */
export function ensureQemuImg(): void {
  try {
    execFileSync('qemu-img', ['--version'], { stdio: 'ignore' });
    return;
  } catch {
    /* fall through to install */
  }
  let lastErr: unknown;
  for (let attempt = 0; attempt < 30; attempt++) {
    try {
      execFileSync('bash', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-utils'], { stdio: 'ignore' });
      execFileSync('qemu-img', ['--version'], { stdio: 'ignore' });
      return;
    } catch (err) {
      lastErr = err; // most likely the dpkg lock held by a concurrent install
      execFileSync('sleep', ['5']);
    }
  }
  throw new Error(`qemu-img is not available and qemu-utils could not be installed: ${String(lastErr)}`);
}

export async function makeTempDir(prefix = 'pir-img-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

export interface MakeImageOptions {
  /** Virtual size, qemu-img syntax ("64M") or bytes. Default 64M. */
  size?: string | number;
  /** File name inside dir; default derived from format and options. */
  name?: string;
  /** -o key=value options (compat, subformat, data_file, ...). */
  options?: Record<string, string | number | boolean>;
  backing?: string;
  backingFormat?: string;
  /** Pass -u so qemu-img does not open the backing file. */
  unsafe?: boolean;
  /** Extra --object definitions (e.g. secrets for luks). */
  objects?: string[];
}

let counter = 0;

/** Create an image with `qemu-img create` and return its path. Images are sparse. */
export async function makeImage(dir: string, format: string, opts: MakeImageOptions = {}): Promise<string> {
  const name = opts.name ?? `img-${format}-${++counter}.${format}`;
  const path = join(dir, name);
  const args = ['create', '-q', '-f', format];
  for (const o of opts.objects ?? []) args.push('--object', o);
  if (opts.backing) args.push('-b', opts.backing);
  if (opts.backingFormat) args.push('-F', opts.backingFormat);
  if (opts.unsafe) args.push('-u');
  const o = Object.entries(opts.options ?? {}).map(([k, v]) => `${k}=${v}`);
  if (o.length) args.push('-o', o.join(','));
  args.push(path);
  if (opts.size !== undefined || !opts.backing) args.push(String(opts.size ?? '64M'));
  for (let attempt = 1; ; attempt++) {
    try {
      await run('qemu-img', args);
      return path;
    } catch (err) {
      // LUKS key derivation benchmarks CPU time by the clock tick; a run that measures no tick
      // fails ("Unable to get accurate CPU usage"): about 1 in 5 here when idle, more under load.
      // That is transient: retry, enough times that a whole CI run does not meet it, and a little
      // later each time (20 immediate retries all failed once, under two test files at a time).
      if (attempt >= 20 || !String((err as { stderr?: string }).stderr ?? err).includes('accurate CPU usage')) throw err;
      await new Promise((resolve) => setTimeout(resolve, 25 * attempt));
    }
  }
}

/** Shortcut for a luks image: qemu-img needs a secret object to create one. */
export async function makeLuksImage(dir: string, size: string | number = '64M', name?: string): Promise<string> {
  return makeImage(dir, 'luks', {
    size,
    name: name ?? `img-luks-${++counter}.luks`,
    objects: ['secret,id=sec0,data=pir-test-passphrase'],
    options: { 'key-secret': 'sec0', 'iter-time': 50 },
  });
}

/** Convert an image (e.g. to produce streamOptimized vmdk with real content). */
export async function convertImage(src: string, dst: string, format: string, options: Record<string, string> = {}): Promise<string> {
  const args = ['convert', '-q', '-O', format];
  const o = Object.entries(options).map(([k, v]) => `${k}=${v}`);
  if (o.length) args.push('-o', o.join(','));
  args.push(src, dst);
  await run('qemu-img', args);
  return dst;
}

export interface QemuInfo {
  format: string;
  'virtual-size': number;
  'actual-size'?: number;
  'backing-filename'?: string;
  'format-specific'?: { type: string; data: Record<string, unknown> };
  [k: string]: unknown;
}

/** `qemu-img info --output=json`, optionally with an explicit format (no probing). */
export async function qemuInfo(path: string, format?: string): Promise<QemuInfo> {
  const args = ['info', '--output=json'];
  if (format) args.push('-f', format);
  args.push(path);
  const { stdout } = await run('qemu-img', args);
  return JSON.parse(stdout) as QemuInfo;
}

/** Overwrite bytes in a file in place (to craft hostile headers). */
export async function patchFile(path: string, offset: number, bytes: Buffer | number[]): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const b = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes);
    await fh.write(b, 0, b.length, offset);
  } finally {
    await fh.close();
  }
}

/** Read a byte range from a file. */
export async function readRange(path: string, offset: number, length: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(length);
    const { bytesRead } = await fh.read(b, 0, length, offset);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** Truncate (or sparsely extend) a file. */
export async function truncateFile(path: string, size: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.truncate(size);
  } finally {
    await fh.close();
  }
}

/** Minimal file-backed RandomAccessReader for tests; counts what it reads. */
export class FileReader implements RandomAccessReader {
  bytesRead = 0;
  private constructor(private readonly fh: FileHandle, readonly size: number) {}

  static async open(path: string): Promise<FileReader> {
    const fh = await open(path, 'r');
    const { size } = await stat(path);
    return new FileReader(fh, size);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const b = Buffer.alloc(Math.max(0, Math.min(length, this.size - offset)));
    if (b.length === 0) return b;
    const { bytesRead } = await this.fh.read(b, 0, b.length, offset);
    this.bytesRead += bytesRead;
    return b.subarray(0, bytesRead);
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/** Open a file, run fn with a reader over it, always close. */
export async function withFileReader<T>(path: string, fn: (r: FileReader) => Promise<T>): Promise<T> {
  const r = await FileReader.open(path);
  try {
    return await fn(r);
  } finally {
    await r.close();
  }
}
