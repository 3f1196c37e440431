/**
 * OVA extraction, streaming: an OVA is an uncompressed tar whose first file is the .ovf
 * descriptor, optionally followed by a .mf manifest (and a .cert), then the files the descriptor
 * references. We read the descriptor (bounded, strict XML), pick the disk it references, and hand
 * that member's bytes — gunzipped when its File says ovf:compression="gzip" — to a sink, in one
 * pass. Every member header is validated (see tar.ts) even after the disk, so an unsafe archive
 * is refused whatever the order of its members. Nothing is ever written under a member's name.
 *
 * Manifest: when the .mf precedes the disk (the order the OVF spec mandates), the digests it
 * lists for the descriptor and for the disk (SHA1, SHA256 or SHA512, over the bytes as stored)
 * are verified; a mismatch refuses the image.
 */
import { createHash, type Hash } from 'node:crypto';
import { decompress, tooLargeError, type DecompressLimits } from './decompress.js';
import { formatBytes, sanitizeForMessage, UnpackRefusedError } from './errors.js';
import { MAX_OVF_BYTES, parseOvfDescriptor, type Finding } from './ovf.js';
import { normalizeMemberName, TarReader } from './tar.js';

export type { Finding } from './ovf.js';

export interface DiskInfo {
  /** Normalized member name of the disk inside the archive (for messages only). */
  name: string;
  /** Exact output size when known in advance (uncompressed member), else null. */
  size: number | null;
}

/** Consumes the disk bytes completely (or throws). Called at most once. */
export type DiskSink = (data: AsyncIterable<Uint8Array>, info: DiskInfo) => Promise<void>;

export interface ExtractOvaOptions {
  limits: DecompressLimits;
  /** Bytes of the uploaded file read so far: the denominator of the expansion ratio of a gzip disk. */
  inputBytes: () => number;
  /** Byte length of the tar stream when known (uncompressed upload): enables early size checks. */
  totalSize?: number;
  ratioGraceBytes?: number;
  signal?: AbortSignal;
}

export interface OvaExtraction {
  properties: Record<string, string>;
  findings: Finding[];
  disk: { name: string; compression: 'gzip' | null };
}

const MAX_MANIFEST_BYTES = 1024 * 1024;
type Algorithm = 'sha1' | 'sha256' | 'sha512';
const HEX_LENGTH: Record<Algorithm, number> = { sha1: 40, sha256: 64, sha512: 128 };

interface ManifestEntry {
  algorithm: Algorithm;
  hex: string;
}

function parseManifest(text: string, findings: Finding[]): Map<string, ManifestEntry> {
  const out = new Map<string, ManifestEntry>();
  let ignored = 0;
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === '') continue;
    const m = /^(SHA1|SHA256|SHA512)\s*\((.+)\)\s*=\s*([0-9A-Fa-f]+)\s*$/.exec(line);
    const algorithm = m?.[1]?.toLowerCase() as Algorithm | undefined;
    if (!m || !algorithm || m[3]!.length !== HEX_LENGTH[algorithm]) {
      ignored++;
      continue;
    }
    let name: string;
    try {
      name = normalizeMemberName(m[2]!);
    } catch {
      ignored++;
      continue;
    }
    out.set(name, { algorithm, hex: m[3]!.toLowerCase() });
  }
  if (ignored > 0) findings.push({ code: 'ova_manifest_lines_ignored', severity: 'info', message: `${ignored} line(s) of the OVA manifest could not be understood and were ignored.` });
  return out;
}

function mismatch(name: string, entry: ManifestEntry, actual: string): UnpackRefusedError {
  return new UnpackRefusedError(
    'manifest_mismatch',
    `The OVA manifest says ${entry.algorithm.toUpperCase()}(${sanitizeForMessage(name, 120)}) = ${entry.hex}, but the file's digest is ${actual}: ` +
      'the package was altered or damaged after it was exported. Export the appliance again and upload the new .ova.',
  );
}

async function* hashing(source: AsyncIterable<Uint8Array>, hash: Hash | null): AsyncGenerator<Uint8Array, void, undefined> {
  for await (const chunk of source) {
    hash?.update(chunk);
    yield chunk;
  }
}

export async function extractOva(source: AsyncIterable<Uint8Array>, sink: DiskSink, opts: ExtractOvaOptions): Promise<OvaExtraction> {
  const tar = new TarReader(source, opts.totalSize === undefined ? {} : { totalSize: opts.totalSize });
  try {
    let entry = await tar.next();
    while (entry && entry.type === 'directory') entry = await tar.next();
    if (!entry) {
      throw new UnpackRefusedError('invalid_ovf', 'The OVA archive contains no files. An .ova must contain an .ovf descriptor followed by its disk(s).');
    }
    if (!entry.name.toLowerCase().endsWith('.ovf')) {
      throw new UnpackRefusedError(
        'invalid_ovf',
        `The first file of the OVA is "${sanitizeForMessage(entry.name, 120)}", but an OVA must start with its .ovf descriptor. ` +
          'Re-create it with the descriptor first (e.g. `tar -cf appliance.ova appliance.ovf appliance.mf disk1.vmdk`) or export it again from your hypervisor.',
      );
    }
    if (entry.size > MAX_OVF_BYTES) {
      throw new UnpackRefusedError('invalid_ovf', `The OVF descriptor "${sanitizeForMessage(entry.name, 120)}" is ${formatBytes(entry.size)}, more than the ${formatBytes(MAX_OVF_BYTES)} accepted.`);
    }
    const descriptorName = entry.name;
    const descriptorBytes = await tar.readBody(MAX_OVF_BYTES, 'OVF descriptor');
    const descriptor = parseOvfDescriptor(descriptorBytes, descriptorName);
    const findings: Finding[] = [...descriptor.findings];
    const disk = descriptor.disks[0]!;
    const diskName = disk.file.memberName;

    let manifest: Map<string, ManifestEntry> | undefined;
    let diskDone = false;
    let sawCertificate = false;
    let lateManifest = false;

    while ((entry = await tar.next())) {
      if (entry.type === 'directory') continue;
      opts.signal?.throwIfAborted();
      if (entry.name === diskName) {
        if (disk.file.compression === null && entry.size > opts.limits.maxOutputBytes) {
          throw tooLargeError(`the OVA disk "${sanitizeForMessage(diskName, 120)}" (${formatBytes(entry.size)})`, opts.limits.maxOutputBytes);
        }
        if (disk.file.declaredSize !== null && disk.file.declaredSize !== entry.size) {
          findings.push({
            code: 'ovf_size_mismatch',
            severity: 'info',
            message: `The OVF declares ${disk.file.declaredSize} bytes for "${sanitizeForMessage(diskName, 120)}" but the archive holds ${entry.size}.`,
          });
        }
        const expected = manifest?.get(diskName);
        const hash = expected ? createHash(expected.algorithm) : null;
        const start = tar.position;
        let data: AsyncIterable<Uint8Array> = hashing(tar.body(), hash);
        if (disk.file.compression === 'gzip') {
          data = decompress(data, 'gzip', {
            ...opts.limits,
            inputBytes: opts.inputBytes,
            what: `the OVA disk "${sanitizeForMessage(diskName, 120)}"`,
            ...(opts.ratioGraceBytes === undefined ? {} : { ratioGraceBytes: opts.ratioGraceBytes }),
            ...(opts.signal ? { signal: opts.signal } : {}),
          });
        }
        await sink(data, { name: diskName, size: disk.file.compression ? null : entry.size });
        if (tar.position !== start + entry.size) throw new Error('the disk sink returned before consuming the whole disk');
        if (expected && hash) {
          const actual = hash.digest('hex');
          if (actual !== expected.hex) throw mismatch(diskName, expected, actual);
        } else if (manifest) {
          findings.push({ code: 'ova_manifest_incomplete', severity: 'info', message: `The OVA manifest lists no digest for the disk "${sanitizeForMessage(diskName, 120)}"; it was not verified.` });
        }
        diskDone = true;
      } else if (entry.name.toLowerCase().endsWith('.mf')) {
        if (manifest || diskDone || entry.size > MAX_MANIFEST_BYTES) {
          lateManifest = true;
          continue;
        }
        manifest = parseManifest(new TextDecoder('utf-8').decode(await tar.readBody(MAX_MANIFEST_BYTES, 'OVA manifest')), findings);
        const forDescriptor = manifest.get(descriptorName);
        if (forDescriptor) {
          const actual = createHash(forDescriptor.algorithm).update(descriptorBytes).digest('hex');
          if (actual !== forDescriptor.hex) throw mismatch(descriptorName, forDescriptor, actual);
        }
      } else if (/\.cert$/i.test(entry.name)) {
        sawCertificate = true;
      }
      // Any other member (more disks, ISO images, NVRAM…) is skipped, headers still validated.
    }

    if (!diskDone) {
      throw new UnpackRefusedError(
        'ovf_disk_missing',
        `The OVF descriptor references the disk file "${sanitizeForMessage(disk.file.href, 120)}", but the archive has no such member. ` +
          'The package is incomplete: export the appliance again (including its disks) and upload the .ova.',
      );
    }
    if (lateManifest) findings.push({ code: 'ova_manifest_not_verified', severity: 'info', message: 'An OVA manifest after the disk (or a second or oversized one) was not verified.' });
    if (sawCertificate) findings.push({ code: 'ova_certificate_not_verified', severity: 'info', message: 'The OVA carries a signing certificate (.cert); its signature was not checked.' });
    if (tar.missingEndMarker) findings.push({ code: 'tar_no_end_marker', severity: 'info', message: 'The tar archive ends without its end-of-archive marker.' });
    if (tar.trailingBytes > 0) findings.push({ code: 'tar_trailing_data', severity: 'info', message: `${tar.trailingBytes} bytes of data after the end of the tar archive were ignored.` });
    return { properties: descriptor.properties, findings, disk: { name: diskName, compression: disk.file.compression } };
  } finally {
    await tar.close();
  }
}
