/**
 * Errors of the unpack stage.
 *
 * `UnpackRefusedError` means the uploaded artifact itself is at fault (too large once expanded,
 * corrupt, unsafe, not what its container_format says): retrying cannot help, so the pipeline
 * refuses the image. Any other error thrown by unpack (I/O, a missing tool, a killed process,
 * an abort) is the environment's fault and worth a retry.
 */

export type UnpackRefusalCode =
  /** the decompressed/extracted disk would exceed `maxOutputBytes` */
  | 'decompressed_too_large'
  /** output/input bytes exceeded `maxRatio` (a decompression bomb, or an extremely sparse image) */
  | 'expansion_ratio'
  /** a compressed stream or tar archive is corrupt or truncated */
  | 'corrupt_archive'
  /** a well-formed archive using a feature we do not accept (sparse tar, chunked OVF file, huge decoder window, zip with several members or encryption…) */
  | 'unsupported_archive'
  /** a tar member that could be dangerous if extracted: traversal, absolute path, link, device, duplicate… */
  | 'unsafe_archive'
  /** after one layer of decompression the data is compressed again (gzip in gzip…), not a disk */
  | 'format_mismatch'
  /** container_format says ova but the data is not a tar archive */
  | 'not_an_ova'
  /** the OVF descriptor is missing, malformed, too large, has a DOCTYPE/entities, or references nothing usable */
  | 'invalid_ovf'
  /** the disk the OVF descriptor references is not in the archive */
  | 'ovf_disk_missing'
  /** the OVA manifest (.mf) digest of a file does not match its content */
  | 'manifest_mismatch';

export class UnpackRefusedError extends Error {
  readonly retryable = false;
  constructor(
    readonly code: UnpackRefusalCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'UnpackRefusedError';
  }
}

export function isUnpackRefusedError(error: unknown): error is UnpackRefusedError {
  return error instanceof UnpackRefusedError;
}

/** Human-readable byte count for messages: "1.5 GiB (1610612736 bytes)". */
export function formatBytes(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  if (!Number.isFinite(n) || n < 1024) return `${n} bytes`;
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const shown = value >= 100 ? value.toFixed(0) : value.toFixed(1).replace(/\.0$/, '');
  return `${shown} ${units[unit]} (${n} bytes)`;
}

/** Strip control characters from text that came from outside (tool stderr, archive names) before echoing it. */
export function sanitizeForMessage(text: string, max = 500): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, '?').replace(/\s+/g, ' ').trim();
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}
