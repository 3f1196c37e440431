/**
 * GET /v2/images's query string → a typed list request, with Glance's rules
 * (glance/api/v2/images.py RequestDeserializer.index and ImagesController.index;
 * glance/db/sqlalchemy/api.py _make_conditions_from_filters; glance/common/utils.py
 * split_filter_op and split_filter_value_for_quotes). Every key that is not one of the
 * parameters below is an extra-property filter, as in Glance; a malformed value of a known
 * parameter is a 400 that names it. Nothing is silently ignored.
 */
import { fail } from '../core/error-catalog.js';
import { SORT_KEYS, type ListQuery, type ListRequest, type SortDir, type SortKey, type TimeRange } from '../core/ports.js';
import { MEMBER_STATUSES, VISIBILITIES, type MemberStatus, type Visibility } from '../schemas/image.js';
import { parseSearch } from '../core/search.js';
import { parseIsoTime } from './iso-time.js';
import { pythonInt } from './python-int.js';


export type RawQuery = Record<string, string | string[] | undefined>;

export const DEFAULT_LIMIT = 25;
export const MAX_LIMIT = 1000;
const DEFAULT_SORT: { key: SortKey; dir: SortDir } = { key: 'created_at', dir: 'desc' };

/** Base fields filtered with Glance's `eq`/`in:` operators. */
const IN_FILTERS = ['id', 'name', 'status', 'disk_format', 'container_format'] as const;
/** Base fields filtered by plain equality. */
const EQ_FILTERS = ['owner', 'checksum', 'os_hash_value'] as const;
const BOOLEAN_FILTERS = ['protected', 'os_hidden'] as const;
const TIME_FILTERS = ['created_at', 'updated_at'] as const;
const TIME_OPS = ['gt', 'gte', 'eq', 'neq', 'lt', 'lte'] as const;
/** Parameters that may be given more than once. */
const REPEATABLE = new Set(['tag', 'sort_key', 'sort_dir', 'created_at', 'updated_at']);
/**
 * Image attributes Glance would compare by equality but PIR does not filter on: refused by name
 * rather than taken for extra properties (which they can never be) and matching nothing.
 */
const UNSUPPORTED = new Map<string, string>([
  ['changes-since', 'The "changes-since" filter is no longer available on v2; use updated_at=gt:<ISO 8601 time>.'],
  ['size', 'Filter on size with size_min and size_max.'],
  ['virtual_size', 'PIR does not filter on virtual_size.'],
  ['min_disk', 'PIR does not filter on min_disk.'],
  ['min_ram', 'PIR does not filter on min_ram.'],
  // Glance compares any `<column>_min`/`_max` as a range; PIR does for size only.
  ...['virtual_size', 'min_disk', 'min_ram'].flatMap((column) => ['min', 'max'].map((end): [string, string] =>
    [`${column}_${end}`, `PIR does not filter on ${column} ranges (only size_min and size_max).`])),
  ['os_hash_algo', 'PIR does not filter on os_hash_algo (it is always sha512); filter on os_hash_value.'],
  ['deleted', 'Deleted images are never listed.'],
  ['is_public', 'is_public is Image API v1; use visibility.'],
]);
/** Longest property key or filter value accepted (Glance's columns are 255 characters). */
const MAX_KEY = 255;
const MAX_VALUE = 65535;
const MAX_IN_VALUES = 1000;
const MAX_PROPERTY_FILTERS = 128;

export function parseListQuery(raw: RawQuery): ListRequest {
  const params = new Map<string, string[]>();
  for (const [key, value] of Object.entries(raw)) {
    if (value === undefined) continue;
    const values = Array.isArray(value) ? value : [value];
    if (values.length > 1 && !REPEATABLE.has(key)) {
      throw fail('bad_list_parameter', `Query parameter '${key}' was given ${values.length} times; give it once.`);
    }
    params.set(key, values);
  }
  const take = (key: string): string | undefined => {
    const v = params.get(key);
    params.delete(key);
    return v?.[0];
  };
  const takeAll = (key: string): string[] => {
    const v = params.get(key) ?? [];
    params.delete(key);
    return v;
  };

  const query: ListRequest['query'] = {
    where: {},
    memberStatus: parseMemberStatus(take('member_status')),
    sort: [],
    limit: parseLimit(take('limit')),
  };
  const request: ListRequest = { query };
  let noImage = false;
  const marker = take('marker');
  if (marker !== undefined) {
    if (marker === '') throw fail('bad_marker', "Query parameter 'marker' is empty; give the id of the last image of the previous page (the 'next' link carries it).");
    request.marker = imageIdSpelling(marker);
  }
  // PIR's catalog extensions: keyword search (q, sort=relevance) and galleries (gallery, recursive).
  let sort = take('sort');
  const q = take('q');
  if (q !== undefined) query.search = parseSearch(q);
  if (sort !== undefined && /^relevance(:desc)?$/.test(sort.trim())) {
    if (!query.search) throw fail('bad_search', "sort=relevance ranks the results of a keyword search: give q as well (e.g. q=debian&sort=relevance).");
    request.relevance = true;
    sort = undefined;
  }
  const gallery = take('gallery');
  const recursive = take('recursive');
  if (gallery !== undefined) {
    if (gallery.length === 0 || gallery.length > 64) throw fail('bad_gallery', "Query parameter 'gallery' is a gallery id (see GET /v2/galleries).");
    request.gallery = { id: gallery, recursive: recursive === undefined ? false : parseBoolean('recursive', recursive) };
  } else if (recursive !== undefined) {
    throw fail('bad_gallery', "Query parameter 'recursive' goes with 'gallery' (list a gallery and the galleries below it).");
  }
  query.sort = parseSort(sort, takeAll('sort_key'), takeAll('sort_dir'));

  const visibility = take('visibility');
  // Glance checks a non-empty visibility only, then compares visibility == '': no image.
  if (visibility === '') noImage = true;
  else if (visibility !== undefined) {
    const allowed = [...VISIBILITIES, 'all'];
    if (!allowed.includes(visibility)) throw fail('bad_visibility', notOneOf('visibility', visibility, allowed));
    query.visibility = visibility as Visibility | 'all';
  }

  for (const field of IN_FILTERS) {
    const value = take(field);
    if (value !== undefined) query.where[field] = field === 'id' ? parseInFilter(field, value).map(imageIdSpelling) : parseInFilter(field, value);
  }
  for (const field of EQ_FILTERS) {
    const value = take(field);
    if (value !== undefined) query.where[field] = bounded(field, value);
  }
  for (const field of BOOLEAN_FILTERS) {
    const value = take(field);
    if (value !== undefined) query.where[field] = parseBoolean(field, value, field === 'os_hidden');
  }
  // Glance hides os_hidden images unless os_hidden=true is asked for.
  query.where.os_hidden ??= false;
  // No status at all: a list that matches nothing (the marker is still checked).
  if (noImage) query.where.status = [];

  const sizeMin = take('size_min');
  if (sizeMin !== undefined) query.sizeMin = parseInteger('size_min', sizeMin);
  const sizeMax = take('size_max');
  if (sizeMax !== undefined) query.sizeMax = parseInteger('size_max', sizeMax);

  const times: TimeRange[] = [];
  for (const field of TIME_FILTERS) for (const value of takeAll(field)) times.push(parseTimeFilter(field, value));
  if (times.length) query.times = times;

  const tags = takeAll('tag').map((t) => bounded('tag', t.trim()));
  if (tags.length) query.tags = [...new Set(tags)];

  // No prototype: a property named __proto__ (or constructor) is a filter like any other.
  const properties: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [key, values] of params) {
    const why = UNSUPPORTED.get(key);
    if (why) throw fail('unsupported_filter', `Cannot filter on '${key}'. ${why}`);
    if (key.length === 0 || key.length > MAX_KEY) throw fail('bad_property_filter', `Property filter names are 1 to ${MAX_KEY} characters; '${key.slice(0, 40)}…' is not.`);
    properties[key] = bounded(key, values[0]!);
  }
  if (Object.keys(properties).length > MAX_PROPERTY_FILTERS) {
    throw fail('bad_property_filter', `At most ${MAX_PROPERTY_FILTERS} property filters per request.`);
  }
  if (Object.keys(properties).length) query.properties = properties;
  return request;
}

function parseLimit(text: string | undefined): number {
  if (text === undefined) return DEFAULT_LIMIT;
  // Glance: int(limit), so ' 5' and '+5' are 5; below 0 is refused.
  const limit = pythonInt(text);
  if (limit === null || limit < 0) throw fail('bad_limit', `Query parameter 'limit' must be a whole number, 0 or more (a page holds at most ${MAX_LIMIT} images); got '${text.slice(0, 40)}'.`);
  return Math.min(limit, MAX_LIMIT);
}

function parseMemberStatus(text: string | undefined): MemberStatus | 'all' {
  if (text === undefined) return 'accepted';
  const allowed = [...MEMBER_STATUSES, 'all'];
  if (!allowed.includes(text)) throw fail('bad_member_status', notOneOf('member_status', text, allowed));
  return text as MemberStatus | 'all';
}

/** Glance's two syntaxes: `sort=k1:dir,k2` or `sort_key=…&sort_dir=…` pairs; then created_at and id as tie-breaks. */
function parseSort(sort: string | undefined, keys: string[], dirs: string[]): ListQuery['sort'] {
  let sortKeys: SortKey[] = [];
  let sortDirs: SortDir[] = [];
  if (sort !== undefined) {
    if (keys.length || dirs.length) throw fail('bad_sort', "Query parameter 'sort' cannot be combined with 'sort_key' or 'sort_dir'; use one syntax.");
    for (const part of sort.trim().split(',')) {
      const [key, dir] = splitOnce(part, ':');
      if (key.trim() === '') throw fail('bad_sort', `Query parameter 'sort' must be key[:asc|desc],… (got '${sort.slice(0, 40)}').`);
      sortKeys.push(sortKey('sort', key.trim()));
      sortDirs.push(sortDir('sort', dir === undefined || dir.trim() === '' ? DEFAULT_SORT.dir : dir.trim()));
    }
  } else {
    sortKeys = keys.map((k) => sortKey('sort_key', k.trim()));
    sortDirs = dirs.map((d) => sortDir('sort_dir', d.trim()));
    if (sortDirs.length > 1 && sortDirs.length !== sortKeys.length) {
      throw fail('bad_sort_dir', `There are ${sortDirs.length} 'sort_dir' values for ${sortKeys.length} 'sort_key' values; give one sort_dir per sort_key, or a single one for all.`);
    }
  }
  if (!sortKeys.length) sortKeys = [DEFAULT_SORT.key];
  if (!sortDirs.length) sortDirs = [DEFAULT_SORT.dir];
  // glance/db/sqlalchemy/api.py _image_get_all: one direction applies to every key and to the
  // tie-breaks; with several, the tie-breaks are descending.
  let tieDir: SortDir = DEFAULT_SORT.dir;
  if (sortDirs.length === 1) {
    tieDir = sortDirs[0]!;
    sortDirs = sortKeys.map(() => tieDir);
  }
  const out = sortKeys.map((key, i) => ({ key, dir: sortDirs[i]! }));
  for (const key of ['created_at', 'id'] as const) if (!sortKeys.includes(key)) out.push({ key, dir: tieDir });
  return out;
}

function sortKey(param: string, key: string): SortKey {
  if (!(SORT_KEYS as readonly string[]).includes(key)) {
    throw fail('bad_sort_key', `Query parameter '${param}': cannot sort by '${key.slice(0, 40)}'; use one of ${SORT_KEYS.join(', ')}.`);
  }
  return key as SortKey;
}

function sortDir(param: string, dir: string): SortDir {
  if (dir !== 'asc' && dir !== 'desc') throw fail('bad_sort_dir', `Query parameter '${param}': the direction must be asc or desc (got '${dir.slice(0, 40)}').`);
  return dir;
}

/** `value`, `eq:value` or `in:a,"b,c"` (Glance's split_filter_op; only eq and in are allowed here). */
/** An image id as stored: a UUID in lower case (api/canonical-image-ids.ts), anything else as sent. */
function imageIdSpelling(id: string): string {
  return UUID.test(id) ? id.toLowerCase() : id;
}
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function parseInFilter(field: string, expression: string): string[] {
  const [op, value] = splitFilterOp(expression);
  if (op === 'eq') return [bounded(field, value)];
  if (op === 'in') {
    const values = splitQuoted(field, value).map((v) => bounded(field, v));
    if (values.length > MAX_IN_VALUES) throw fail('bad_filter', `${field}=in: takes at most ${MAX_IN_VALUES} values.`);
    return values;
  }
  throw fail('bad_filter_operator', `Unknown operator '${op.slice(0, 20)}' in ${field}=${expression.slice(0, 60)}: use ${field}=<value>, ${field}=eq:<value> or ${field}=in:<a>,<b> (a value with ':' needs eq:).`);
}

/** Glance's split_filter_op: `op:value`, unless the whole expression is an ISO 8601 time (then eq). */
function splitFilterOp(expression: string): [string, string] {
  const [left, right] = splitOnce(expression, ':');
  if (right === undefined || parseIsoTime(expression) !== null) return ['eq', expression];
  return [left, right];
}

/**
 * Glance's split_filter_value_for_quotes: values separated by commas; a value in double quotes
 * may hold commas (a quote must follow a comma or start the text, and close before a comma or the end).
 */
export function splitQuoted(field: string, value: string): string[] {
  let open = false;
  for (let i = 0; i < value.length; i++) {
    if (value[i] !== '"' || (i > 0 && value[i - 1] === '\\')) continue;
    if (!open && i > 0 && value[i - 1] !== ',') throw fail('bad_filter', `Invalid ${field} filter value: no comma before the opening quotation mark at ${i}.`);
    if (open && i + 1 !== value.length && value[i + 1] !== ',') throw fail('bad_filter', `Invalid ${field} filter value: no comma after the closing quotation mark at ${i}.`);
    open = !open;
  }
  if (open) throw fail('bad_filter', `Invalid ${field} filter value: a quotation mark is not closed.`);
  const out: string[] = [];
  for (const m of value.matchAll(/"([^"\\]*(?:\\.[^"\\]*)*)",?|([^,]+),?|,/g)) out.push(m[1] ?? m[2] ?? '');
  return out;
}

/**
 * `gt|gte|eq|neq|lt|lte:<ISO 8601>` (or a bare time: eq) → a range on the stored millisecond
 * timestamps that selects what the shown (whole-second) times satisfy: an image shown as
 * 12:00:00Z matches eq:12:00:00Z whatever its milliseconds.
 */
function parseTimeFilter(field: (typeof TIME_FILTERS)[number], expression: string): TimeRange {
  const [op, text] = splitFilterOp(expression);
  if (!(TIME_OPS as readonly string[]).includes(op)) {
    throw fail('bad_filter_operator', `Unknown operator '${op.slice(0, 20)}' in ${field}: use one of ${TIME_OPS.join(', ')} followed by ':' and an ISO 8601 time.`);
  }
  const ms = parseIsoTime(text);
  if (ms === null) throw fail('bad_filter', `Bad "${field}" query filter format: use ISO 8601 date-time notation (e.g. 2024-05-01T12:00:00Z).`);
  const floor = Math.floor(ms / 1000) * 1000;
  const ceil = Math.ceil(ms / 1000) * 1000;
  const iso = (t: number) => new Date(t).toISOString();
  const whole = floor === ms;
  switch (op) {
    case 'gt': return { field, gte: iso(floor + 1000) };
    case 'gte': return { field, gte: iso(ceil) };
    case 'lt': return { field, lt: iso(ceil) };
    case 'lte': return { field, lt: iso(floor + 1000) };
    case 'eq': return whole ? { field, gte: iso(ms), lt: iso(ms + 1000) } : { field, gte: iso(ms), lt: iso(ms) };
    default: return whole ? { field, gte: iso(ms), lt: iso(ms + 1000), negate: true } : { field };
  }
}

/** 'true' or 'false'; `anyCase` as Glance's os_hidden (lowered), not its protected (taken as sent: 'True' is 400). */
function parseBoolean(field: string, value: string, anyCase = true): boolean {
  const v = anyCase ? value.toLowerCase() : value;
  if (v !== 'true' && v !== 'false') throw fail('bad_filter', `Invalid value '${value.slice(0, 40)}' for '${field}' filter: valid values are 'true' or 'false'.`);
  return v === 'true';
}

/** Glance: int(value). */
function parseInteger(field: string, value: string): number {
  const n = pythonInt(value);
  if (n === null || !Number.isSafeInteger(n)) {
    throw fail('bad_filter', `${field} must be a whole number of bytes; got '${value.slice(0, 40)}'.`);
  }
  return n;
}

function notOneOf(field: string, value: string, allowed: readonly string[]): string {
  return `Query parameter '${field}' cannot be '${value.slice(0, 40)}': use one of ${allowed.join(', ')}.`;
}

function bounded(field: string, value: string): string {
  if (value.length > MAX_VALUE) throw fail('bad_filter', `The value of '${field.slice(0, 40)}' is longer than ${MAX_VALUE} characters.`);
  return value;
}

function splitOnce(text: string, sep: string): [string, string | undefined] {
  const i = text.indexOf(sep);
  return i < 0 ? [text, undefined] : [text.slice(0, i), text.slice(i + 1)];
}

/** The query string of `raw` without `marker`, every value of every key kept in order (for first/next links). */
export function linkQuery(raw: RawQuery, marker?: string): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(raw)) {
    if (key === 'marker' || value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) params.append(key, v);
  }
  if (marker !== undefined) params.set('marker', marker);
  return params.toString();
}
