/** Test helpers for workers/unpack: temp dirs, a small tar writer, OVF descriptors, CLI compression. */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import zlib from 'node:zlib';

export function tempDir(t: { after: (fn: () => void) => void }, prefix = 'pir-unpack-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function digests(data: Uint8Array): { size: number; md5: string; sha512: string } {
  return {
    size: data.length,
    md5: createHash('md5').update(data).digest('hex'),
    sha512: createHash('sha512').update(data).digest('hex'),
  };
}

/** Compress with the Debian CLI tool (gzip, xz, zstd, bzip2). xz defaults to -1 here: -6 is slow. */
export function compressCli(codec: 'gzip' | 'xz' | 'zstd' | 'bzip2', data: Uint8Array, level?: number): Buffer {
  const args = ['-c'];
  const lvl = level ?? (codec === 'xz' ? 1 : undefined);
  if (lvl !== undefined) args.push(`-${lvl}`);
  if (codec === 'zstd') args.push('-q');
  return execFileSync(codec, args, { input: data, maxBuffer: 1 << 30 });
}

/** Somewhat compressible, deterministic-enough test data: random words over a small alphabet plus runs. */
export function sampleDisk(bytes: number): Buffer {
  const out = Buffer.alloc(bytes);
  const noise = randomBytes(bytes);
  for (let i = 0; i < bytes; i++) out[i] = i % 4096 < 1024 ? 0 : 0x41 + (noise[i]! % 16);
  return out;
}

// ------------------------------------------------------------------ tar writer

export interface TarMember {
  name: string;
  data?: Uint8Array | string;
  /** typeflag, default '0' ('5' for names ending in '/') */
  type?: string;
  linkname?: string;
  /** how to store a name longer than 100 bytes (or force it): GNU 'L' record, pax 'x' header, or ustar prefix */
  longName?: 'gnu' | 'pax' | 'prefix';
  /** extra pax records for this member */
  pax?: Record<string, string>;
  /** override the size written in the header (the data written stays `data`) */
  headerSize?: number;
  /** write the size field in GNU base-256 */
  base256Size?: boolean;
  /** header format: POSIX ustar (default) or old GNU */
  format?: 'posix' | 'gnu';
  /** corrupt the header checksum */
  badChecksum?: boolean;
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

function header(name: string, opts: { type: string; size: number; linkname?: string; prefix?: string; format: 'posix' | 'gnu'; base256?: boolean; badChecksum?: boolean }): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write(octal(0o644, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii');
  h.write(octal(0, 8), 116, 'ascii');
  if (opts.base256) {
    h[124] = 0x80;
    let v = BigInt(opts.size);
    for (let i = 135; i > 124; i--) {
      h[i] = Number(v & 0xffn);
      v >>= 8n;
    }
  } else {
    h.write(octal(opts.size, 12), 124, 'ascii');
  }
  h.write(octal(1_700_000_000, 12), 136, 'ascii');
  h.write('        ', 148, 'ascii');
  h.write(opts.type, 156, 'latin1');
  if (opts.linkname) h.write(opts.linkname, 157, 100, 'utf8');
  if (opts.format === 'posix') {
    h.write('ustar\0', 257, 'ascii');
    h.write('00', 263, 'ascii');
  } else {
    h.write('ustar  \0', 257, 'ascii');
  }
  h.write('user', 265, 'ascii');
  h.write('group', 297, 'ascii');
  if (opts.prefix) h.write(opts.prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const b of h) sum += b;
  if (opts.badChecksum) sum += 1;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'ascii');
  return h;
}

function pad(data: Buffer): Buffer {
  const rest = (512 - (data.length % 512)) % 512;
  return rest ? Buffer.concat([data, Buffer.alloc(rest)]) : data;
}

function paxBody(records: Record<string, string>): Buffer {
  let out = '';
  for (const [k, v] of Object.entries(records)) {
    const body = ` ${k}=${v}\n`;
    let len = Buffer.byteLength(body) + 1;
    while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
    out += `${len}${body}`;
  }
  return Buffer.from(out, 'utf8');
}

export function makeTar(members: TarMember[], opts: { endBlocks?: number; trailing?: Uint8Array } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const m of members) {
    const data = typeof m.data === 'string' ? Buffer.from(m.data) : Buffer.from(m.data ?? new Uint8Array(0));
    const type = m.type ?? (m.name.endsWith('/') ? '5' : '0');
    const format = m.format ?? 'posix';
    let name = m.name;
    let prefix: string | undefined;
    const nameBytes = Buffer.byteLength(m.name);
    const pax: Record<string, string> = { ...(m.pax ?? {}) };
    if (m.longName === 'gnu' || (nameBytes > 100 && m.longName === undefined && format === 'gnu')) {
      const body = Buffer.concat([Buffer.from(m.name), Buffer.from([0])]);
      parts.push(header('././@LongLink', { type: 'L', size: body.length, format: 'gnu' }), pad(body));
      name = m.name.slice(0, 99);
    } else if (m.longName === 'pax' || (nameBytes > 100 && m.longName === undefined)) {
      pax.path = m.name;
      name = m.name.slice(0, 99);
    } else if (m.longName === 'prefix') {
      const cut = m.name.lastIndexOf('/');
      prefix = m.name.slice(0, cut);
      name = m.name.slice(cut + 1);
    }
    if (Object.keys(pax).length > 0) {
      const body = paxBody(pax);
      parts.push(header(`PaxHeaders/${name.slice(0, 80)}`, { type: 'x', size: body.length, format: 'posix' }), pad(body));
    }
    parts.push(
      header(name, {
        type,
        size: m.headerSize ?? data.length,
        format,
        ...(m.linkname ? { linkname: m.linkname } : {}),
        ...(prefix ? { prefix } : {}),
        ...(m.base256Size ? { base256: true } : {}),
        ...(m.badChecksum ? { badChecksum: true } : {}),
      }),
    );
    if (data.length) parts.push(pad(data));
  }
  parts.push(Buffer.alloc(512 * (opts.endBlocks ?? 2)));
  if (opts.trailing) parts.push(Buffer.from(opts.trailing));
  return Buffer.concat(parts);
}

// ------------------------------------------------------------------ OVF descriptors

export interface OvfDiskSpec {
  href: string;
  fileId?: string;
  diskId?: string;
  compression?: string;
  size?: number;
  /** don't attach this disk to the virtual system */
  detached?: boolean;
}

export interface OvfSpec {
  disks: OvfDiskSpec[];
  osId?: number;
  vmwOsType?: string;
  osDescription?: string;
  cpus?: number;
  memory?: { quantity: number; units?: string };
  /** raw XML inserted after the XML declaration (DOCTYPE tests) */
  prolog?: string;
  /** raw XML inserted in the VirtualHardwareSection */
  extraHardware?: string;
  pasd?: Record<string, string>;
}

export function makeOvf(spec: OvfSpec): string {
  const files = spec.disks
    .map((d, i) => `    <File ovf:id="${d.fileId ?? `file${i + 1}`}" ovf:href="${d.href}"${d.size !== undefined ? ` ovf:size="${d.size}"` : ''}${d.compression ? ` ovf:compression="${d.compression}"` : ''}/>`)
    .join('\n');
  const disks = spec.disks
    .map(
      (d, i) =>
        `    <Disk ovf:capacity="16" ovf:capacityAllocationUnits="byte * 2^30" ovf:diskId="${d.diskId ?? `vmdisk${i + 1}`}" ovf:fileRef="${d.fileId ?? `file${i + 1}`}" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>`,
    )
    .join('\n');
  const diskItems = spec.disks
    .map((d, i) => (d.detached ? '' : `
      <Item>
        <rasd:AddressOnParent>${i}</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk ${i + 1}</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/${d.diskId ?? `vmdisk${i + 1}`}</rasd:HostResource>
        <rasd:InstanceID>${10 + i}</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>`))
    .join('');
  const os =
    spec.osId !== undefined || spec.vmwOsType
      ? `
    <OperatingSystemSection ovf:id="${spec.osId ?? 1}"${spec.vmwOsType ? ` vmw:osType="${spec.vmwOsType}"` : ''}>
      <Info>The kind of installed guest operating system</Info>
      ${spec.osDescription ? `<Description>${spec.osDescription}</Description>` : ''}
    </OperatingSystemSection>`
      : '';
  const cpu =
    spec.cpus !== undefined
      ? `
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of Virtual CPUs</rasd:Description>
        <rasd:ElementName>${spec.cpus} virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>${spec.cpus}</rasd:VirtualQuantity>
        <vmw:CoresPerSocket ovf:required="false">1</vmw:CoresPerSocket>
      </Item>`
      : '';
  const mem = spec.memory
    ? `
      <Item>
        <rasd:AllocationUnits>${spec.memory.units ?? 'byte * 2^20'}</rasd:AllocationUnits>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>${spec.memory.quantity}</rasd:VirtualQuantity>
      </Item>`
    : '';
  const pasd = spec.pasd
    ? `
      <Item>
        <rasd:ElementName>processor features</rasd:ElementName>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        ${Object.entries(spec.pasd)
          .map(([k, v]) => `<cim_pasd:${k}>${v}</cim_pasd:${k}>`)
          .join('\n        ')}
      </Item>`
    : '';
  return `<?xml version="1.0" encoding="UTF-8"?>${spec.prolog ?? ''}
<!--Generated by a test-->
<Envelope vmw:buildId="build-1" xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:cim_pasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ProcessorAllocationSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
${files}
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
${disks}
  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="VM Network">
      <Description>The VM Network network &amp; more</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="test-vm">
    <Info>A virtual machine</Info>
    <Name>test-vm</Name>${os}
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>test-vm</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType>
      </System>${cpu}${mem}${pasd}
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SCSI Controller</rasd:Description>
        <rasd:ElementName>SCSI controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>${diskItems}${spec.extraHardware ?? ''}
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
`;
}

/** A well-formed OVA: descriptor, optional manifest, disk(s). */
export function makeOva(opts: { ovf: string; files: Record<string, Uint8Array>; manifest?: string | 'auto'; ovfName?: string }): Buffer {
  const ovfName = opts.ovfName ?? 'appliance.ovf';
  const members: TarMember[] = [{ name: ovfName, data: opts.ovf }];
  if (opts.manifest !== undefined) {
    const text =
      opts.manifest === 'auto'
        ? [[ovfName, Buffer.from(opts.ovf)] as const, ...Object.entries(opts.files)]
            .map(([n, d]) => `SHA256(${n})= ${createHash('sha256').update(d).digest('hex')}\n`)
            .join('')
        : opts.manifest;
    members.push({ name: 'appliance.mf', data: text });
  }
  for (const [name, data] of Object.entries(opts.files)) members.push({ name, data });
  return makeTar(members);
}

/** Collect an async iterable of bytes. */
export async function collect(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of source) parts.push(c);
  return Buffer.concat(parts);
}

export async function* chunksOf(data: Uint8Array, size = 64 * 1024): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, Math.min(data.length, i + size));
}

// ------------------------------------------------------------------ zip writer

export interface ZipEntry {
  name: string;
  data: Uint8Array;
  /** 8 = deflate (default), 0 = stored, anything else is written as is (data stays raw) */
  method?: number;
  /** extra general-purpose flag bits (1 = encrypted) */
  flags?: number;
  /** write sizes/CRC in a data descriptor after the data (bit 3), with its optional signature */
  descriptor?: boolean;
  /** zip64 sizes and offset in the central directory (and a zip64 end record) */
  zip64?: boolean;
  /** override the CRC-32 written */
  crc?: number;
}

/**
 * A zip archive as `zip`/Python's zipfile write it: local headers, central directory, end record
 * (zip64 records when any entry asks, or `zip64End`). `prefix` is put before the first local header.
 */
export function makeZip(entries: ZipEntry[], opts: { prefix?: Uint8Array; comment?: string; zip64End?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  const push = (b: Buffer) => {
    parts.push(b);
    offset += b.length;
  };
  if (opts.prefix) push(Buffer.from(opts.prefix));
  let anyZip64 = false;
  for (const e of entries) {
    const method = e.method ?? 8;
    const body = method === 8 ? zlib.deflateRawSync(e.data) : Buffer.from(e.data);
    const crc = e.crc ?? zlib.crc32(e.data);
    const flags = (e.flags ?? 0) | (e.descriptor ? 0x08 : 0);
    const name = Buffer.from(e.name, 'utf8');
    const localOffset = offset;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(flags, 6);
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(e.descriptor ? 0 : crc, 14);
    local.writeUInt32LE(e.descriptor ? 0 : body.length, 18);
    local.writeUInt32LE(e.descriptor ? 0 : e.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    push(Buffer.concat([local, name]));
    push(body);
    if (e.descriptor) {
      const d = Buffer.alloc(16);
      d.writeUInt32LE(0x08074b50, 0);
      d.writeUInt32LE(crc, 4);
      d.writeUInt32LE(body.length, 8);
      d.writeUInt32LE(e.data.length, 12);
      push(d);
    }
    const c = Buffer.alloc(46);
    c.writeUInt32LE(0x02014b50, 0);
    c.writeUInt16LE(0x031e, 4);
    c.writeUInt16LE(e.zip64 ? 45 : 20, 6);
    c.writeUInt16LE(flags, 8);
    c.writeUInt16LE(method, 10);
    c.writeUInt32LE(crc, 16);
    let extra = Buffer.alloc(0);
    if (e.zip64) {
      anyZip64 = true;
      c.writeUInt32LE(0xffffffff, 20);
      c.writeUInt32LE(0xffffffff, 24);
      c.writeUInt32LE(0xffffffff, 42);
      extra = Buffer.alloc(28);
      extra.writeUInt16LE(1, 0);
      extra.writeUInt16LE(24, 2);
      extra.writeBigUInt64LE(BigInt(e.data.length), 4);
      extra.writeBigUInt64LE(BigInt(body.length), 12);
      extra.writeBigUInt64LE(BigInt(localOffset), 20);
    } else {
      c.writeUInt32LE(body.length, 20);
      c.writeUInt32LE(e.data.length, 24);
      c.writeUInt32LE(localOffset, 42);
    }
    c.writeUInt16LE(name.length, 28);
    c.writeUInt16LE(extra.length, 30);
    central.push(Buffer.concat([c, name, extra]));
  }
  const cdOffset = offset;
  const cd = Buffer.concat(central);
  push(cd);
  // zip64End: the zip64 end records without need, the end record's fields left real (Info-ZIP on a pipe).
  const zip64End = anyZip64 || opts.zip64End === true;
  if (zip64End) {
    const recPos = offset;
    const rec = Buffer.alloc(56);
    rec.writeUInt32LE(0x06064b50, 0);
    rec.writeBigUInt64LE(44n, 4);
    rec.writeUInt16LE(45, 12);
    rec.writeUInt16LE(45, 14);
    rec.writeBigUInt64LE(BigInt(entries.length), 24);
    rec.writeBigUInt64LE(BigInt(entries.length), 32);
    rec.writeBigUInt64LE(BigInt(cd.length), 40);
    rec.writeBigUInt64LE(BigInt(cdOffset), 48);
    push(rec);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(0x07064b50, 0);
    loc.writeBigUInt64LE(BigInt(recPos), 8);
    loc.writeUInt32LE(1, 16);
    push(loc);
  }
  const comment = Buffer.from(opts.comment ?? '', 'utf8');
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(anyZip64 ? 0xffff : entries.length, 8);
  end.writeUInt16LE(anyZip64 ? 0xffff : entries.length, 10);
  end.writeUInt32LE(anyZip64 ? 0xffffffff : cd.length, 12);
  end.writeUInt32LE(anyZip64 ? 0xffffffff : cdOffset, 16);
  end.writeUInt16LE(comment.length, 20);
  push(Buffer.concat([end, comment]));
  return Buffer.concat(parts);
}

/** A raw disk of `size` bytes that is all zeros but for an MBR with one partition (a fresh cloud disk). */
export function mostlyEmptyDisk(size: number): Buffer {
  const disk = Buffer.alloc(size);
  randomBytes(440).copy(disk, 0); // boot code
  const p = disk.subarray(446, 462);
  p[0] = 0x80;
  p[4] = 0x83;
  p.writeUInt32LE(2048, 8);
  p.writeUInt32LE(size / 512 - 2048, 12);
  disk[510] = 0x55;
  disk[511] = 0xaa;
  randomBytes(4096).copy(disk, 1024 * 1024); // a superblock's worth of data in the partition
  return disk;
}
