/**
 * The unpack stage: turn the staged upload into the disk image to store, in one streaming pass.
 *
 * Rules:
 * - Input starting with a gzip / xz / zstd / bzip2 / zip magic is always decompressed (one layer),
 *   whatever container_format says. A zip must hold exactly one file (zip.ts). Data that is
 *   compressed again after that layer is refused (`format_mismatch`): nested layers multiply a
 *   bomb's ratio, and what is left must be the disk itself.
 * - container_format 'ova' — or 'ovf' when the (decompressed) data is a tar — extracts the disk
 *   the OVF descriptor references (see ova.ts). 'ova' data that is not a tar is refused.
 * - Anything else uncompressed is passed through: `output` is null and no byte is copied.
 *
 * The output file is written by writeHashedFile, so its size, md5 and sha512 come out of the same
 * pass, and all-zero blocks are left as holes (sparse), so a mostly-empty disk costs only its data
 * on disk. Limits (`maxOutputBytes`, `maxRatio` = output bytes / uploaded bytes beyond the first
 * `ratioFloorBytes` of output) are enforced while streaming. Errors: `UnpackRefusedError` = the upload's fault, not retryable; anything else
 * (I/O, missing tool, killed process, abort) = retryable. On any failure the output file is removed.
 */
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { rm, stat } from 'node:fs/promises';
import { writeHashedFile } from '../../ingest/hashing/index.js';
import { CountingSource, decompress, tooLargeError } from './decompress.js';
import { detectCodec, isCompression, readHead, SNIFF_BYTES, type CompressionCodec, type SniffedCodec } from './detect-codec.js';
import { UnpackRefusedError } from './errors.js';
import { extractOva, type Finding } from './ova.js';
import { readZipMember, unzipMember } from './zip.js';

export { UnpackRefusedError, type UnpackRefusalCode } from './errors.js';

export interface UnpackLimits {
  /** Largest disk image (decompressed / extracted) accepted, in bytes. */
  maxOutputBytes: number;
  /** Largest accepted output/input byte ratio, checked continuously once the output passed `ratioFloorBytes`. */
  maxRatio: number;
  /**
   * Output below which the ratio is not enforced (default 1 GiB, PIR_UNPACK_RATIO_FLOOR): a
   * mostly-empty disk compresses far better than any ratio limit, and below the floor its zeros
   * cost neither disk (holes) nor much time; a bomb is stopped once it passes the floor.
   */
  ratioFloorBytes?: number;
}

export const DEFAULT_RATIO_FLOOR_BYTES = 1024 ** 3;

export interface UnpackResult {
  /** Compression of the upload itself ('none' also for an OVA whose disk member was gzip-compressed). */
  codec: 'none' | CompressionCodec;
  /** 'ova' / 'ovf' when a disk was extracted from a package, 'bare' otherwise. */
  container: 'bare' | 'ova' | 'ovf';
  /** null = pass-through: the input is the disk as is. */
  output: { size: number; md5: string; sha512: string } | null;
  properties: Record<string, string>;
  findings: Finding[];
}

export interface UnpackOptions {
  containerFormat: string | null;
  limits: UnpackLimits;
  signal?: AbortSignal;
}

const READ_CHUNK_BYTES = 256 * 1024;

/**
 * Reads the first `n` bytes (or fewer at end of stream) and returns them with the whole stream,
 * head included. `close()` ends the source even if `stream` was never started (a generator that
 * never ran ignores return()).
 */
async function peek(
  source: AsyncIterable<Uint8Array>,
  n: number,
): Promise<{ head: Uint8Array; stream: AsyncGenerator<Uint8Array, void, undefined>; close: () => Promise<void> }> {
  const it = source[Symbol.asyncIterator]();
  const buffered: Uint8Array[] = [];
  let have = 0;
  let ended = false;
  try {
    while (have < n) {
      const r = await it.next();
      if (r.done) {
        ended = true;
        break;
      }
      buffered.push(r.value);
      have += r.value.length;
    }
  } catch (error) {
    await it.return?.().catch(() => {});
    throw error;
  }
  const head = Buffer.concat(buffered).subarray(0, n);
  async function* stream(): AsyncGenerator<Uint8Array, void, undefined> {
    try {
      for (const chunk of buffered) yield chunk;
      buffered.length = 0;
      if (ended) return;
      for (;;) {
        const r = await it.next();
        if (r.done) return;
        yield r.value;
      }
    } finally {
      await close();
    }
  }
  const close = async () => {
    if (!ended) {
      ended = true;
      await it.return?.();
    }
  };
  return { head, stream: stream(), close };
}

const ovfNotAPackage: Finding = {
  code: 'ovf_not_a_package',
  severity: 'info',
  message: 'container_format is "ovf" but the data is not a tar package; it was stored as a plain disk image.',
};

function notAnOva(codec: 'none' | CompressionCodec, sniffed: SniffedCodec): UnpackRefusedError {
  const what = codec === 'none' ? 'The upload' : `The upload, once ${codec}-decompressed,`;
  const nested = isCompression(sniffed) ? ` (it is ${sniffed}-compressed data: compress the .ova only once)` : '';
  return new UnpackRefusedError(
    'not_an_ova',
    `container_format is "ova", but ${what.charAt(0).toLowerCase()}${what.slice(1)} is not a tar archive${nested}. ` +
      'Upload the .ova file itself, or set container_format to "bare" for a plain disk image.',
  );
}

function checkLimits(limits: UnpackLimits): void {
  if (!limits || !(limits.maxOutputBytes > 0) || !Number.isFinite(limits.maxOutputBytes)) throw new TypeError('unpack: limits.maxOutputBytes must be a positive finite number');
  if (!(limits.maxRatio > 0)) throw new TypeError('unpack: limits.maxRatio must be a positive number');
  if (limits.ratioFloorBytes !== undefined && !(limits.ratioFloorBytes >= 0)) throw new TypeError('unpack: limits.ratioFloorBytes must be a number ≥ 0');
}

function nestedCompression(codec: CompressionCodec, inner: CompressionCodec): UnpackRefusedError {
  return new UnpackRefusedError(
    'format_mismatch',
    `After ${codec} decompression the upload is ${inner}-compressed again, not a disk image. PIR unpacks one layer of compression only ` +
      '(nested layers multiply the reach of a decompression bomb): decompress it down to the disk image, compress that once, and upload it again.',
  );
}

/** Where unpack reads the upload from (a blob, or a local file). */
export interface UnpackSource {
  size: number;
  /** The first `bytes` bytes (fewer when the input is shorter). */
  head(bytes: number): Promise<Uint8Array>;
  /** All of the input, streamed. */
  stream(): Promise<Readable>;
  /** A local file with the input, for random access (a zip's central directory). */
  localFile(): Promise<{ path: string; release(): Promise<void> }>;
}

/** Where unpack writes the disk it produced. */
export interface UnpackSink {
  /** Writes all of `data` (sparse where the store can), hashing it; leaves nothing when it throws. */
  write(data: AsyncIterable<Uint8Array>, opts: { maxBytes: number; sparse: boolean; signal?: AbortSignal }): Promise<{ size: number; md5: string; sha512: string }>;
  /** Removes whatever an earlier or failed write left. */
  discard(): Promise<void>;
}

/** unpack() between two local files (tests, benches). */
export async function unpack(inputPath: string, outputPath: string, opts: UnpackOptions): Promise<UnpackResult & { output: { path: string } | null }> {
  const source: UnpackSource = {
    size: (await stat(inputPath)).size,
    head: (bytes) => readHead(inputPath, bytes),
    stream: async () => createReadStream(inputPath, { highWaterMark: READ_CHUNK_BYTES, ...(opts.signal ? { signal: opts.signal } : {}) }),
    localFile: async () => ({ path: inputPath, release: async () => {} }),
  };
  const sink: UnpackSink = {
    write: (data, o) => writeHashedFile(data, outputPath, o),
    discard: () => rm(outputPath, { force: true }),
  };
  const result = await unpackFrom(source, sink, opts);
  return { ...result, output: result.output ? { path: outputPath, ...result.output } : null };
}

export async function unpackFrom(source: UnpackSource, sink: UnpackSink, opts: UnpackOptions): Promise<UnpackResult> {
  checkLimits(opts.limits);
  const { limits, signal } = opts;
  signal?.throwIfAborted();
  const format = (opts.containerFormat ?? 'bare').trim().toLowerCase();
  const wantsOvf = format === 'ova' || format === 'ovf';
  const findings: Finding[] = [];

  const inputSize = source.size;
  const sniffed = detectCodec(await source.head(SNIFF_BYTES));
  const codec: 'none' | CompressionCodec = isCompression(sniffed) ? sniffed : 'none';

  if (codec === 'none' && !(wantsOvf && sniffed === 'tar')) {
    if (format === 'ova') throw notAnOva('none', sniffed);
    if (format === 'ovf') findings.push(ovfNotAPackage);
    return { codec: 'none', container: 'bare', output: null, properties: {}, findings };
  }

  // From here on we write the output. What a crashed earlier attempt left there is this stage's
  // own scratch: clear it first.
  await sink.discard();

  const ratioGraceBytes = limits.ratioFloorBytes ?? DEFAULT_RATIO_FLOOR_BYTES;
  let readStream: Awaited<ReturnType<UnpackSource['stream']>> | undefined;
  let local: { path: string; release(): Promise<void> } | undefined;
  let file: CountingSource;
  let unzipped: AsyncGenerator<Uint8Array, void, undefined> | undefined;
  if (codec === 'zip') {
    // A zip is read through its central directory; only its one member's bytes are streamed.
    // It needs random access: a local file (the filesystem store's own, else a temporary copy).
    local = await source.localFile();
    try {
      const member = await readZipMember(local.path, inputSize);
      ({ file, stream: unzipped } = unzipMember(local.path, member, { ...limits, ratioGraceBytes, ...(signal ? { signal } : {}) }));
    } catch (error) {
      await local.release().catch(() => {});
      throw error;
    }
  } else {
    readStream = await source.stream();
    if (signal) {
      const stream = readStream;
      const stop = () => stream.destroy(signal.reason as Error);
      if (signal.aborted) stop();
      else signal.addEventListener('abort', stop, { once: true });
    }
    // An abort can destroy the stream before anything iterates it (while a decoder starts); an
    // 'error' event with no listener would then crash the process. The iteration still sees the
    // error: an errored stream throws it to whoever reads it.
    readStream.on('error', () => {});
    file = new CountingSource(inSlices(readStream, RATIO_ACCOUNTING_SLICE));
  }
  const inputBytes = () => file.bytes;
  const chainOpts = { ...limits, ratioGraceBytes, inputBytes, ...(signal ? { signal } : {}) };
  let chain: AsyncGenerator<Uint8Array, void, undefined> | undefined;
  let closeDecoder: (() => Promise<void>) | undefined;
  /** Wraps the stream handed to writeHashedFile, to rethrow our own error as is if the writer wraps it. */
  let tap: CountingSource | undefined;
  /** What the upload was treated as: 'ova'/'ovf' when a package was extracted, else 'bare'. */
  let container: UnpackResult['container'] = format === 'ova' || format === 'ovf' ? format : 'bare';
  let properties: Record<string, string> = {};
  let output: UnpackResult['output'] = null;

  const write = async (data: AsyncIterable<Uint8Array>) => {
    tap = new CountingSource(data);
    output = await sink.write(tap, { maxBytes: limits.maxOutputBytes, sparse: true, ...(signal ? { signal } : {}) });
  };

  try {
    let stream: AsyncGenerator<Uint8Array, void, undefined>;
    let inner: SniffedCodec;
    if (codec === 'none') {
      stream = file[Symbol.asyncIterator]();
      inner = sniffed;
    } else {
      const onWarning = (message: string) => findings.push({ code: 'decompressor_warning', severity: 'info', message });
      const decoded = unzipped ?? decompress(file, codec as Exclude<CompressionCodec, 'zip'>, { ...chainOpts, onWarning });
      const peeked = await peek(decoded, SNIFF_BYTES);
      stream = peeked.stream;
      closeDecoder = peeked.close;
      inner = detectCodec(peeked.head);
    }
    chain = stream;

    if (wantsOvf && inner === 'tar') {
      const extraction = await extractOva(stream, write, {
        limits,
        inputBytes,
        ratioGraceBytes,
        ...(codec === 'none' ? { totalSize: inputSize } : {}),
        ...(signal ? { signal } : {}),
      });
      properties = extraction.properties;
      findings.push(...extraction.findings);
      if (extraction.disk.compression) findings.push({ code: 'ovf_disk_gzip', severity: 'info', message: `The OVA disk "${extraction.disk.name}" was gzip-compressed (ovf:compression) and was decompressed.` });
    } else {
      if (format === 'ova') throw notAnOva(codec, inner);
      if (format === 'ovf') findings.push(ovfNotAPackage);
      container = 'bare';
      if (isCompression(inner) && codec !== 'none') throw nestedCompression(codec, inner);
      if (inner === 'tar') findings.push({ code: 'decompressed_tar', severity: 'info', message: `The ${codec}-decompressed data is a tar archive, stored as is (container_format "${format}"); set container_format to "ova" to extract an OVA.` });
      await write(stream);
    }
    if (!output) throw new Error('unpack: no output was written');
    return { codec, container, output, properties, findings };
  } catch (error) {
    await sink.discard().catch(() => {});
    if (signal?.aborted) throw signal.reason;
    // Prefer our own error over however the writer reported it.
    const ours = tap?.failed ? tap.error : error;
    if (ours instanceof UnpackRefusedError) throw ours;
    if ((ours as { code?: unknown } | null)?.code === 'size_limit') throw tooLargeError('the upload', limits.maxOutputBytes);
    throw ours;
  } finally {
    // Close the chain ourselves (kills a decompressor child, closes the file) before returning.
    await chain?.return(undefined).catch(() => {});
    await closeDecoder?.().catch(() => {});
    readStream?.destroy();
    await local?.release().catch(() => {});
  }
}

/**
 * Input is counted as the decoder pulls it, so the expansion ratio is only as precise as the
 * pieces it pulls: a store that reads 1 MiB (or an object store's larger) chunks would let a
 * bomb expand that much further before the ratio sees it. Views, not copies.
 */
const RATIO_ACCOUNTING_SLICE = 64 * 1024;

async function* inSlices(source: AsyncIterable<Uint8Array>, size: number): AsyncGenerator<Uint8Array, void, undefined> {
  for await (const chunk of source) {
    for (let at = 0; at < chunk.length; at += size) yield chunk.subarray(at, Math.min(at + size, chunk.length));
  }
}
