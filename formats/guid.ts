// Microsoft-style GUIDs are stored mixed-endian: the first three groups little-endian.
export function guidToBytes(guid: string): Buffer {
  const h = guid.replace(/-/g, '');
  const b = Buffer.from(h, 'hex');
  const out = Buffer.alloc(16);
  out.writeUInt32LE(b.readUInt32BE(0), 0);
  out.writeUInt16LE(b.readUInt16BE(4), 4);
  out.writeUInt16LE(b.readUInt16BE(6), 6);
  b.copy(out, 8, 8, 16);
  return out;
}

export function bytesToGuid(buf: Buffer): string {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(buf.readUInt32LE(0), 0);
  b.writeUInt16BE(buf.readUInt16LE(4), 4);
  b.writeUInt16BE(buf.readUInt16LE(6), 6);
  buf.copy(b, 8, 8, 16);
  const h = b.toString('hex').toUpperCase();
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
