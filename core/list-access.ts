/**
 * Which images a caller may list, as Glance's database layer decides it
 * (glance/db/sqlalchemy/api.py `_select_images_query` and `_image_get_all`), reduced to a small
 * predicate every ManifestStore translates the same way:
 *
 * - an admin sees every image; a regular user sees its own images, public and community images,
 *   and shared images it is a member of with the requested member_status (default accepted);
 * - a `visibility` filter keeps only that visibility (`all`: no restriction);
 * - without one, community images are left out unless the caller's project owns them (for
 *   admins too: Glance applies this default after the admin's "everything").
 */
import type { MemberStatus, Visibility } from '../schemas/image.js';
import type { ImageDoc } from '../schemas/image.js';
import { GALLERY_PROPERTY } from './gallery-rules.js';
import type { ListQuery, SortSpec, SortValue } from './ports.js';

export type AccessTerm =
  | { kind: 'owner'; owner: string }
  | { kind: 'visibility'; visibilities: Visibility[] }
  /** Shared images the project is a member of, with one of these member statuses. */
  | { kind: 'member'; member: string; statuses: MemberStatus[] }
  /** Images in one of these galleries (shared with the project: README "Gallery sharing"), whatever their own visibility. */
  | { kind: 'gallery'; galleries: string[] };

export interface Access {
  /** The image must match at least one term; null: no restriction. */
  anyOf: AccessTerm[] | null;
  /** The image's visibility must be one of these; null: no restriction. */
  visibilityIn: Visibility[] | null;
}

const MEMBER_STATUSES_ALL: MemberStatus[] = ['pending', 'accepted', 'rejected'];

export function listAccess(query: Pick<ListQuery, 'scope' | 'visibility' | 'memberStatus'>): Access {
  const { scope, visibility, memberStatus } = query;
  const own: AccessTerm = { kind: 'owner', owner: scope.project_id };
  if (scope.admin) {
    if (visibility === 'all') return { anyOf: null, visibilityIn: null };
    if (visibility !== undefined) return { anyOf: null, visibilityIn: [visibility] };
    return { anyOf: [own, { kind: 'visibility', visibilities: ['public', 'private', 'shared'] }], visibilityIn: null };
  }
  const member: AccessTerm = {
    kind: 'member',
    member: scope.project_id,
    statuses: memberStatus === 'all' ? MEMBER_STATUSES_ALL : [memberStatus],
  };
  // A shared gallery's images count as shared with the project (a `visibility` filter still
  // filters on each image's own visibility).
  const statuses = galleryStatuses(query);
  const galleryIds = [...new Set((scope.galleries ?? []).filter((g) => statuses.includes(g.status)).map((g) => g.gallery_id))].sort();
  const viaGallery: AccessTerm[] = galleryIds.length ? [{ kind: 'gallery', galleries: galleryIds }] : [];
  switch (visibility) {
    case undefined: return { anyOf: [own, { kind: 'visibility', visibilities: ['public'] }, member, ...viaGallery], visibilityIn: null };
    case 'all': return { anyOf: [own, { kind: 'visibility', visibilities: ['public', 'community'] }, member, ...viaGallery], visibilityIn: null };
    case 'public':
    case 'community': return { anyOf: null, visibilityIn: [visibility] };
    case 'private': return { anyOf: [own], visibilityIn: ['private'] };
    case 'shared': return { anyOf: [own, member, ...viaGallery], visibilityIn: ['shared'] };
  }
}

/**
 * The member statuses of gallery grants that can let a non-admin list an image under this
 * query (listAccess's `gallery` term): none under `visibility=public|community|private`, else the
 * member_status asked for. A caller loads and expands only the grants with one of these.
 */
export function galleryStatuses(query: Pick<ListQuery, 'visibility' | 'memberStatus'>): MemberStatus[] {
  if (query.visibility === 'public' || query.visibility === 'community' || query.visibility === 'private') return [];
  return query.memberStatus === 'all' ? [...MEMBER_STATUSES_ALL] : [query.memberStatus];
}

/** Whether a document passes the access predicate (for checking a marker, and for tests). */
export function accessAllows(access: Access, doc: ImageDoc): boolean {
  if (access.visibilityIn && !access.visibilityIn.includes(doc.visibility)) return false;
  if (!access.anyOf) return true;
  return access.anyOf.some((term) => {
    switch (term.kind) {
      case 'owner': return doc.owner === term.owner;
      case 'visibility': return term.visibilities.includes(doc.visibility);
      case 'member': return doc.visibility === 'shared' && (doc.members ?? []).some((m) => m.member_id === term.member && term.statuses.includes(m.status));
      case 'gallery': return doc.properties[GALLERY_PROPERTY] !== undefined && term.galleries.includes(doc.properties[GALLERY_PROPERTY]!);
    }
  });
}

/**
 * The sort a store applies: repeated keys dropped (the first wins), nothing after `id` (ids are
 * unique), and `id` appended in the last key's direction when missing, so the order is total.
 */
export function normalizeSort(sort: SortSpec[]): SortSpec[] {
  const out: SortSpec[] = [];
  const seen = new Set<string>();
  for (const s of sort) {
    if (seen.has(s.key)) continue;
    seen.add(s.key);
    out.push(s);
    if (s.key === 'id') return out;
  }
  out.push({ key: 'id', dir: out.length ? out[out.length - 1]!.dir : 'desc' });
  return out;
}

/** A document's values for the keys of normalizeSort(sort): the keyset of a marker. */
export function sortValues(doc: ImageDoc, sort: SortSpec[]): SortValue[] {
  return normalizeSort(sort).map((s) => (doc[s.key] ?? null) as SortValue);
}

/** The order the port promises, in memory (a reference for tests, and for merging pages). */
export function compareDocs(a: ImageDoc, b: ImageDoc, sort: SortSpec[]): number {
  for (const s of normalizeSort(sort)) {
    const va = (a[s.key] ?? null) as SortValue;
    const vb = (b[s.key] ?? null) as SortValue;
    if (va === vb) continue;
    let c: number;
    if (va === null) c = -1;
    else if (vb === null) c = 1;
    else c = va < vb ? -1 : 1;
    return s.dir === 'asc' ? c : -c;
  }
  return 0;
}
