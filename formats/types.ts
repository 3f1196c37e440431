// Public contract of the format-inspection library. Everything here is pure data:
// the library never touches the filesystem itself, it only reads through a
// RandomAccessReader supplied by the caller.

/** Random access to the bytes of an image. `read` may return fewer bytes than asked at EOF. */
export interface RandomAccessReader {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
}

/**
 * One observation about an image. `refuse` findings make `judge` reject the image
 * (except `encrypted`, which the policy can waive); `info` findings are advisory.
 */
export interface Finding {
  code: string;
  severity: 'info' | 'refuse';
  /** Human sentence naming the format, the field, and what the user can do. */
  message: string;
}

export type DetectedFormat =
  | 'raw' | 'qcow2' | 'qed' | 'vmdk' | 'vhd' | 'vhdx' | 'vdi' | 'iso' | 'luks' | 'ploop' | 'gpt' | 'mbr';

export interface FormatReport {
  format: DetectedFormat;
  virtualSize: number | null;
  findings: Finding[];
  details: Record<string, unknown>;
  /** Size of the image file in bytes (the reader's size). */
  fileSize: number;
  /** Total bytes read through the caller's reader for this detection. */
  bytesRead: number;
  /** Other formats whose signatures also matched (e.g. 'gpt' for a raw disk, 'mbr' for a hybrid ISO). */
  alsoMatches: DetectedFormat[];
}

export interface VerdictPolicy {
  maxVirtualSize: number;
  allowEncrypted: boolean;
}

export type Verdict =
  | { ok: true; format: DetectedFormat; virtualSize: number | null; findings: Finding[] }
  | { ok: false; code: string; message: string; findings: Finding[] };
