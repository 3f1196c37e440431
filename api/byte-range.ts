/**
 * Which bytes of an image a download asks for, as Glance reads it: one `Range` (RFC 9110, a
 * single range; several are refused with 400, as Glance does), or, with no `Range`, Glance's
 * legacy request `Content-Range: bytes a-b/n` (kept by Glance for old clients). Anything
 * malformed or outside the image is a 416.
 */
export interface ByteRange {
  start: number;
  /** Inclusive. */
  end: number;
}

export type RangeRequest =
  | { kind: 'whole' }
  | { kind: 'range'; range: ByteRange }
  | { kind: 'refused'; status: 400 | 416; code: 'multiple_ranges' | 'bad_range'; message: string };

export function requestedRange(headers: { range?: string; 'content-range'?: string }, size: number): RangeRequest {
  const { range, 'content-range': contentRange } = headers;
  if (range !== undefined) {
    if (range.includes(',')) return { kind: 'refused', status: 400, code: 'multiple_ranges', message: 'Requests with several ranges are not supported (as in Glance); make one request per range.' };
    const parsed = parseRange(range, size);
    return parsed ? { kind: 'range', range: parsed } : { kind: 'refused', status: 416, code: 'bad_range', message: `Range '${range}' does not fit an image of ${size} bytes.` };
  }
  if (contentRange !== undefined) {
    const parsed = parseLegacyContentRange(contentRange, size);
    return parsed ? { kind: 'range', range: parsed } : { kind: 'refused', status: 416, code: 'bad_range', message: `Content-Range '${contentRange}' does not fit an image of ${size} bytes (the form read on a download is 'bytes first-last/length').` };
  }
  return { kind: 'whole' };
}

/**
 * One byte range (RFC 9110 single range): "bytes=a-b", "bytes=a-", "bytes=-n". The unit is
 * case-insensitive (RFC 9110 §14.1) and blanks around "=" and "-" are taken, as webob's
 * Range.parse (Glance) takes them: "BYTES=0-5" and "bytes= 0 - 5" are the same range.
 */
export function parseRange(header: string, size: number): ByteRange | null {
  const match = /^bytes[ \t]*=[ \t]*(\d*)[ \t]*-[ \t]*(\d*)$/i.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '') || size === 0) return null;
  let start: number;
  let end: number;
  if (match[1] === '') {
    start = Math.max(0, size - Number(match[2]));
    end = size - 1;
  } else {
    start = Number(match[1]);
    end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  }
  return start <= end && start < size ? { start, end } : null;
}

/** "bytes a-b/n" or "bytes a-b/*" in a download request: bytes a to b, all within the image (and within n). */
export function parseLegacyContentRange(header: string, size: number): ByteRange | null {
  const match = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header.trim());
  if (!match) return null;
  const start = Number(match[1]);
  const end = Number(match[2]);
  const length = match[3] === '*' ? null : Number(match[3]);
  if (start > end || end >= size || (length !== null && end >= length)) return null;
  return { start, end };
}
