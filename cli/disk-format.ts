/**
 * The disk and container format of a file for `pir image batch`: from its extension, else from
 * its magic bytes (formats/detect.ts reads only the headers), without qemu-img.
 */
import { open } from 'node:fs/promises';
import { detectFormat } from '../formats/detect.js';
import type { RandomAccessReader } from '../formats/types.js';
import { DISK_FORMATS, type ContainerFormat, type DiskFormat } from '../schemas/image.js';

const BY_EXTENSION: Record<string, DiskFormat> = {
  qcow2: 'qcow2', qcow: 'qcow2', raw: 'raw', vmdk: 'vmdk', vhd: 'vhd', vpc: 'vhd', vhdx: 'vhdx', vdi: 'vdi', iso: 'iso', hds: 'ploop', ploop: 'ploop',
};
const COMPRESSED = new Set(['gz', 'xz', 'zst', 'zstd']);

export interface FileFormat {
  disk_format: DiskFormat;
  container_format: ContainerFormat;
  /** How it was decided. */
  by: 'extension' | 'magic bytes';
}

export async function fileFormat(path: string): Promise<FileFormat> {
  const parts = path.toLowerCase().split('/').pop()!.split('.').slice(1);
  let ext = parts.pop();
  if (ext === 'ova') return { disk_format: 'vmdk', container_format: 'ova', by: 'extension' };
  let container: ContainerFormat = 'bare';
  if (ext && COMPRESSED.has(ext)) {
    container = 'compressed';
    ext = parts.pop(); // disk.qcow2.gz → qcow2; a compressed file's magic is the codec's, so no sniffing
    return { disk_format: (ext && BY_EXTENSION[ext]) || 'raw', container_format: container, by: 'extension' };
  }
  if (ext && BY_EXTENSION[ext]) return { disk_format: BY_EXTENSION[ext]!, container_format: container, by: 'extension' };
  const handle = await open(path, 'r');
  try {
    const size = (await handle.stat()).size;
    const reader: RandomAccessReader = {
      size,
      async read(offset, length) {
        const buffer = Buffer.alloc(Math.max(0, Math.min(length, size - offset)));
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset);
        return buffer.subarray(0, bytesRead);
      },
    };
    const report = await detectFormat(reader);
    const format = report.format === 'gpt' || report.format === 'mbr' ? 'raw' : report.format;
    if (!(DISK_FORMATS as readonly string[]).includes(format)) {
      throw new Error(`${path} looks like ${report.format}, which PIR does not store; convert it (qemu-img convert -O qcow2) first`);
    }
    return { disk_format: format as DiskFormat, container_format: container, by: 'magic bytes' };
  } finally {
    await handle.close();
  }
}
