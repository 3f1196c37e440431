import type { DetectedFormat, Finding, FormatReport, Verdict, VerdictPolicy } from './types.js';

/** Glance disk_format values → the format the content must be detected as. */
const DECLARED: Readonly<Record<string, DetectedFormat>> = {
  raw: 'raw',
  // Kernel, ramdisk and machine images are raw bytes to an inspector.
  ami: 'raw', aki: 'raw', ari: 'raw',
  qcow2: 'qcow2', qed: 'qed', vmdk: 'vmdk', vhd: 'vhd', vpc: 'vhd', vhdx: 'vhdx', vdi: 'vdi',
  iso: 'iso', luks: 'luks', ploop: 'ploop', parallels: 'ploop',
};

/** Codes a policy may waive; every other refusal is unconditional. */
function waived(f: Finding, policy: VerdictPolicy): boolean {
  return f.code === 'encrypted' && policy.allowEncrypted;
}

/** Partition tables describe raw disks, so they satisfy a raw declaration. */
function effective(format: DetectedFormat): DetectedFormat {
  return format === 'gpt' || format === 'mbr' ? 'raw' : format;
}

/** Declarations whose content is a raw *disk* (kernels and ramdisks, aki/ari, are any length). */
const RAW_DISKS: ReadonlySet<string> = new Set(['raw', 'ami']);
const SECTOR = 512;

function describe(format: DetectedFormat, details: Record<string, unknown> = {}): string {
  if (format === 'raw' && details.archive === 'tar') return "a tar archive, not a disk (an OVA is uploaded with container_format 'ova', which extracts its disk)";
  return format === 'raw' ? 'not a recognised disk format (raw)' : format;
}

/** The disk formats a client can declare (the API's disk_format values that name a format). */
const DECLARABLE = new Set(['raw', 'qcow2', 'vmdk', 'vhd', 'vhdx', 'vdi', 'iso', 'ploop']);

/** How to make content of format `detected` into what was declared, or to declare what it is. */
function mismatchAdvice(declared: string, detected: DetectedFormat, details: Record<string, unknown>): string {
  if (detected === 'raw' && details.archive === 'tar') return "Declare container_format 'ova'";
  // qemu-img writes no ISO: an ISO is made with xorriso or genisoimage.
  const convert = declared === 'iso' ? 'build the ISO with xorriso or genisoimage'
    : `convert it with \`qemu-img convert -O ${declared === 'vhd' ? 'vpc' : declared} in.img out.img\``;
  if (detected === 'raw') return `If it is a plain disk, declare disk_format 'raw'; otherwise ${convert}`;
  if (!DECLARABLE.has(detected)) return `PIR stores no ${detected} disks: ${convert}`;
  return `Either declare disk_format '${detected}' or ${convert}`;
}

type Refusal = Extract<Verdict, { ok: false }>;

function no(code: string, message: string, findings: Finding[]): Refusal {
  return { ok: false, code, message, findings };
}

/**
 * Whether 0 bytes can be an image declared `declaredDiskFormat`: null when they can (an empty raw
 * disk is a disk, as Glance has it, and what the glance and openstack CLIs upload from an empty,
 * non-terminal stdin when no file is named), else the refusal: no other format is 0 bytes long.
 */
export function emptyImageRefusal(declaredDiskFormat: string | null, findings: Finding[] = []): Refusal | null {
  const declared = declaredDiskFormat?.trim().toLowerCase();
  if (declared !== undefined && DECLARED[declared] === 'raw') return null;
  return no('empty_image',
    `The image has no data: the upload (or what it decompressed to) is 0 bytes long${declared ? `, which no ${declaredDiskFormat!.slice(0, 40)} image is` : ''}. Upload the disk image file itself.`, findings);
}

/**
 * Decide whether an inspected image may be stored, following Glance's
 * 2024.2+ defaults: the content must be what the user declared, self-contained,
 * unencrypted (unless allowed) and within the size limit.
 */
export function judge(report: FormatReport, declaredDiskFormat: string | null, policy: VerdictPolicy): Verdict {
  const findings = report.findings;

  if (report.fileSize === 0) return emptyImageRefusal(declaredDiskFormat, findings) ?? { ok: true, format: 'raw', virtualSize: 0, findings };

  const blocking = findings.find((f) => f.severity === 'refuse' && !waived(f, policy));
  if (blocking) return no(blocking.code, blocking.message, findings);

  const detected = effective(report.format);
  const declaredRaw = declaredDiskFormat !== null && RAW_DISKS.has(declaredDiskFormat.trim().toLowerCase());
  // qemu has no ISO driver: it probes an ISO as raw and reads it as a plain disk (a hybrid ISO is
  // written to USB sticks and booted so), so an ISO fits a raw disk declaration as in Glance, which
  // takes any content declared raw; stored formats qemu would read as something else stay refused.
  // Declared so, the ISO is the disk its bytes make (Glance: the actual size), not its volume.
  const isoDisk = declaredRaw && detected === 'iso';
  if (declaredDiskFormat === null) {
    // Without a declaration we can only accept content we positively recognise.
    if (detected === 'raw') {
      return no('format_unknown',
        'The image content is not a recognised disk format and no disk_format was declared. If this is a plain disk image, create a new image with disk_format raw and upload it there.', findings);
    }
  } else {
    const declared = DECLARED[declaredDiskFormat.trim().toLowerCase()];
    if (declared === undefined) {
      return no('unsupported_disk_format',
        `The declared disk_format '${declaredDiskFormat.slice(0, 40)}' is not one PIR can verify. Use one of raw, qcow2, vmdk, vhd, vhdx, vdi, iso, ploop, qed or luks.`, findings);
    }
    if (declared !== detected && !isoDisk) {
      return no('format_mismatch',
        `The image was declared as disk_format '${declaredDiskFormat.slice(0, 40)}' but its content is ${describe(detected, report.details)}. ${mismatchAdvice(declared, detected, report.details)}, then upload it to a new image (a refused image takes no more data).`, findings);
    }
  }

  // Glance stores raw data of any length; a partial last sector is noted, not refused (a
  // hypervisor reads it padded with zeros). A truncated upload is caught by its checksum or size.
  const notes = declaredRaw && (detected === 'raw' || isoDisk) && report.fileSize % SECTOR !== 0
    ? [...findings, partialSectorNote(report.fileSize)] : findings;

  const virtualSize = isoDisk ? report.fileSize : report.virtualSize;
  if (virtualSize === null) {
    return no('virtual_size_unknown',
      `PIR could not determine the virtual size of this ${report.format} image from its header. Re-export the image and upload it to a new image.`, notes);
  }
  if (virtualSize > policy.maxVirtualSize) {
    return no('virtual_size_too_large',
      `The ${report.format} image has a virtual size of ${virtualSize} bytes, above this cloud's limit of ${policy.maxVirtualSize} bytes. Shrink the disk (e.g. \`qemu-img resize --shrink\`) or ask an administrator to raise the limit.`, notes);
  }

  return { ok: true, format: detected, virtualSize, findings: notes };
}

function partialSectorNote(fileSize: number): Finding {
  return {
    code: 'raw_partial_sector', severity: 'info',
    message: `The raw image is ${fileSize} bytes long, not a whole number of 512-byte sectors (${Math.floor(fileSize / SECTOR)} sectors and ${fileSize % SECTOR} bytes): a hypervisor reads the last sector padded with zeros. Stored as uploaded, as Glance does; if the upload was cut short, its checksum will not match the source's.`,
  };
}
