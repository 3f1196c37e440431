/**
 * The list semantics in memory, written independently of the stores' query builders (the access
 * rules come from core/list-access.ts, which both stores also use): the contract suite checks each
 * store's answers against it.
 */
import { accessAllows, compareDocs, listAccess, normalizeSort } from '../../core/list-access.js';
import type { ListQuery } from '../../core/ports.js';
import type { ImageDoc } from '../../schemas/image.js';
import { GALLERY_PROPERTY } from '../../core/gallery-rules.js';
import { searchMatches } from '../../core/search.js';

export function referenceMatches(query: ListQuery, doc: ImageDoc): boolean {
  if (!accessAllows(listAccess(query), doc)) return false;
  for (const [key, value] of Object.entries(query.where)) {
    if (value === undefined) continue;
    const actual = (doc as unknown as Record<string, unknown>)[key] ?? null;
    if (Array.isArray(value) ? !value.includes(actual as string) : actual !== value) return false;
  }
  if (query.sizeMin !== undefined && (doc.size === null || doc.size < query.sizeMin)) return false;
  if (query.sizeMax !== undefined && (doc.size === null || doc.size > query.sizeMax)) return false;
  for (const t of query.times ?? []) {
    const v = doc[t.field];
    const inside = (t.gte === undefined || v >= t.gte) && (t.lt === undefined || v < t.lt);
    if (inside === Boolean(t.negate)) return false;
  }
  for (const [k, v] of Object.entries(query.properties ?? {})) if (doc.properties[k] !== v) return false;
  for (const tag of query.tags ?? []) if (!doc.tags.includes(tag)) return false;
  if (query.search && !searchMatches(doc, query.search)) return false;
  if (query.galleryIn && !query.galleryIn.includes(doc.properties[GALLERY_PROPERTY] as string)) return false;
  return true;
}

/** Every page of `query` (ignoring its limit) as the port promises them, in order. */
export function referenceList(query: ListQuery, docs: ImageDoc[]): string[] {
  const sort = normalizeSort(query.sort);
  return docs.filter((d) => referenceMatches(query, d)).sort((a, b) => compareDocs(a, b, sort)).map((d) => d.id);
}
