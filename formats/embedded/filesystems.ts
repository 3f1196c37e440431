/**
 * Filesystem signatures and labels, from the first 8 KiB of a volume (and the ISO 9660 volume
 * descriptor at 32 KiB). Each probe looks at fixed offsets only: nothing here follows a pointer.
 */
export interface VolumeFacts {
  fs: string;
  label?: string;
  /** ISO 9660 only. */
  systemId?: string;
}

/** Bytes of a volume's start a probe needs. */
export const VOLUME_HEAD = 8 * 1024;

export function probeVolume(head: Buffer): VolumeFacts | null {
  return ext(head) ?? xfs(head) ?? fatOrNtfs(head) ?? swap(head);
}

/** ext2/3/4: the superblock at 1024; magic 0xEF53 at 56; s_volume_name at 120 (16 bytes). */
function ext(b: Buffer): VolumeFacts | null {
  const sb = 1024;
  if (b.length < sb + 136 || b.readUInt16LE(sb + 56) !== 0xef53) return null;
  const compat = b.readUInt32LE(sb + 92);
  const incompat = b.readUInt32LE(sb + 96);
  // extents (0x40), 64bit (0x80), flex_bg (0x200) are ext4's; a journal (compat 0x4) makes ext3.
  const fs = incompat & (0x40 | 0x80 | 0x200) ? 'ext4' : compat & 0x4 ? 'ext3' : 'ext2';
  return withLabel(fs, text(b, sb + 120, 16));
}

/** XFS: "XFSB" at 0; sb_fname at 108 (12 bytes). */
function xfs(b: Buffer): VolumeFacts | null {
  if (b.length < 120 || b.toString('latin1', 0, 4) !== 'XFSB') return null;
  return withLabel('xfs', text(b, 108, 12));
}

/** FAT12/16/32 boot sectors carry their label; NTFS and exFAT keep it elsewhere (only the type is told). */
function fatOrNtfs(b: Buffer): VolumeFacts | null {
  if (b.length < 512 || b[510] !== 0x55 || b[511] !== 0xaa) return null;
  const oem = b.toString('latin1', 3, 11);
  if (oem === 'NTFS    ') return { fs: 'ntfs' };
  if (oem === 'EXFAT   ') return { fs: 'exfat' };
  if (b.toString('latin1', 0x52, 0x5a) === 'FAT32   ' && b[0x42] === 0x29) return withLabel('vfat', fatLabel(text(b, 0x47, 11)));
  const type = b.toString('latin1', 0x36, 0x3e);
  if ((type === 'FAT12   ' || type === 'FAT16   ') && b[0x26] === 0x29) return withLabel('vfat', fatLabel(text(b, 0x2b, 11)));
  return null;
}

/** Linux swap: "SWAPSPACE2" at the end of the first 4 KiB page; label at 1024 + 28 (16 bytes). */
function swap(b: Buffer): VolumeFacts | null {
  if (b.length < 4096 || b.toString('latin1', 4086, 4096) !== 'SWAPSPACE2') return null;
  return withLabel('swap', text(b, 1024 + 28, 16));
}

/** ISO 9660 Primary Volume Descriptor (sector 16): system id 8..40, volume id 40..72. */
export function probeIso(pvd: Buffer): VolumeFacts | null {
  if (pvd.length < 72 || pvd[0] !== 1 || pvd.toString('latin1', 1, 6) !== 'CD001') return null;
  const facts: VolumeFacts = { fs: 'iso9660' };
  const volume = text(pvd, 40, 32);
  const system = text(pvd, 8, 32);
  if (volume) facts.label = volume;
  if (system) facts.systemId = system;
  return facts;
}

const fatLabel = (label: string) => (label === 'NO NAME' ? '' : label);

function withLabel(fs: string, label: string): VolumeFacts {
  return label ? { fs, label } : { fs };
}

/** A fixed-width field as printable text: up to the first NUL, control and non-ASCII bytes dropped, trimmed. */
export function text(b: Buffer, start: number, length: number): string {
  const raw = b.subarray(start, Math.min(b.length, start + length));
  const nul = raw.indexOf(0);
  return (nul >= 0 ? raw.subarray(0, nul) : raw).toString('latin1').replace(/[^\x20-\x7e]/g, '').trim();
}
