// Strict parser for VMDK text descriptors. Every line must be understood:
// unknown syntax is a refusal, because qemu may interpret it in ways we did not check.

export type ExtentAccess = 'RW' | 'RDONLY' | 'NOACCESS';

export interface VmdkExtent {
  access: ExtentAccess;
  sectors: bigint;
  type: string; // SPARSE, FLAT, ZERO, VMFS, ...
  fileName: string | null;
  offset: bigint | null;
  line: number;
}

export interface VmdkDescriptor {
  fields: Record<string, string>; // header keys (case preserved as written)
  ddb: Record<string, string>;
  extents: VmdkExtent[];
  createType: string | null;
}

export type ParseResult = { ok: true; descriptor: VmdkDescriptor } | { ok: false; line: number; reason: string };

const EXTENT_TYPES = new Set(['SPARSE', 'FLAT', 'ZERO', 'VMFS', 'VMFSSPARSE', 'VMFSRDM', 'VMFSRAW', 'SESPARSE', 'VSANSPARSE']);
const EXTENT_RE = /^(RW|RDONLY|NOACCESS)\s+(\d{1,20})\s+([A-Za-z]+)(?:\s+"([^"]*)"(?:\s+(\d{1,20}))?)?$/i;
const KEY_RE = /^([A-Za-z][A-Za-z0-9_.]*)\s*=\s*(.*)$/;
const MAX_LINES = 10_000;

function unquote(v: string): string {
  const t = v.trim();
  return t.length >= 2 && t.startsWith('"') && t.endsWith('"') ? t.slice(1, -1) : t;
}

/** Decode descriptor bytes: stop at the first NUL (descriptors are NUL padded), reject control bytes. */
export function decodeDescriptor(buf: Buffer): string | null {
  const nul = buf.indexOf(0);
  const text = buf.subarray(0, nul === -1 ? buf.length : nul).toString('utf8');
  // eslint-disable-next-line no-control-regex
  if (text.includes('\ufffd') || /[\u0001-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(text)) return null;
  return text;
}

export function parseDescriptor(text: string): ParseResult {
  const lines = text.split(/\r?\n/);
  if (lines.length > MAX_LINES) return { ok: false, line: MAX_LINES, reason: `more than ${MAX_LINES} lines` };
  const d: VmdkDescriptor = { fields: {}, ddb: {}, extents: [], createType: null };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const ext = EXTENT_RE.exec(line);
    if (ext) {
      const type = ext[3]!.toUpperCase();
      if (!EXTENT_TYPES.has(type)) return { ok: false, line: i + 1, reason: `unknown extent type '${ext[3]!.slice(0, 20)}'` };
      d.extents.push({
        access: ext[1]!.toUpperCase() as ExtentAccess,
        sectors: BigInt(ext[2]!),
        type,
        fileName: ext[4] ?? null,
        offset: ext[5] !== undefined ? BigInt(ext[5]) : null,
        line: i + 1,
      });
      continue;
    }
    const kv = KEY_RE.exec(line);
    if (kv) {
      const key = kv[1]!;
      const value = unquote(kv[2]!);
      if (key.toLowerCase().startsWith('ddb.')) d.ddb[key] = value;
      else d.fields[key] = value;
      if (key.toLowerCase() === 'createtype') d.createType = value;
      continue;
    }
    return { ok: false, line: i + 1, reason: 'a line that is neither a setting nor an extent' };
  }
  return { ok: true, descriptor: d };
}

/** True when an extent line names a file other than the one holding the descriptor. */
export function namesPath(e: VmdkExtent): boolean {
  return e.fileName !== null && (e.fileName.includes('/') || e.fileName.includes('\\'));
}
