/**
 * Galleries as pure rules: the image property that places an image in a gallery, what a gallery
 * name may be, and paths and subtrees computed from a project's galleries (core/gallery-service.ts
 * loads them; a project's tree is small and capped).
 */
import type { Gallery } from './catalog-ports.js';
import type { MemberStatus } from '../schemas/image.js';
import { fail } from './error-catalog.js';

/** The extra property holding an image's gallery id (PIR's namespace: clients set it only through its own rules). */
export const GALLERY_PROPERTY = 'pir_gallery_id';

export const GALLERY_LIMITS = {
  nameLength: 255,
  perProject: 10_000,
  depth: 32,
};

/**
 * A gallery name as stored: trimmed and in Unicode NFC, so `café` typed precomposed (NFC) or as
 * `e` + combining acute (NFD) is one name, unique among its siblings either way.
 */
export function checkGalleryName(name: unknown): string {
  if (typeof name !== 'string') throw fail('bad_gallery', "A gallery's 'name' is a string.");
  const trimmed = name.normalize('NFC').trim();
  if (trimmed.length === 0 || trimmed.length > GALLERY_LIMITS.nameLength) throw fail('bad_gallery', `A gallery name is 1 to ${GALLERY_LIMITS.nameLength} characters.`);
  if (trimmed.includes('/')) throw fail('bad_gallery', "A gallery name may not hold '/': it separates the names of a gallery's path (linux/debian/12).");
  if (trimmed === '.' || trimmed === '..') throw fail('bad_gallery', "'.' and '..' are no gallery names.");
  if (/[\u0000-\u001f\u007f]/.test(trimmed)) throw fail('bad_gallery', 'A gallery name may not hold control characters.');
  return trimmed;
}

/** Whether two gallery names are the same name (compared in NFC: names stored before NFC on input may be NFD). */
export function sameGalleryName(a: string, b: string): boolean {
  return a === b || a.normalize('NFC') === b.normalize('NFC');
}

/** The gallery's path from its project's root (`linux/debian/12`). */
export function pathOf(byId: Map<string, Gallery>, gallery: Gallery): string {
  const names: string[] = [];
  let at: Gallery | undefined = gallery;
  for (let depth = 0; at && depth <= GALLERY_LIMITS.depth + 1; depth++) {
    names.unshift(at.name);
    at = at.parent_id ? byId.get(at.parent_id) : undefined;
  }
  return names.join('/');
}

/** How deep the gallery sits (1: at the root). */
export function depthOf(byId: Map<string, Gallery>, gallery: Gallery): number {
  let depth = 1;
  for (let at = gallery; at.parent_id && depth <= GALLERY_LIMITS.depth + 1; depth++) {
    const parent = byId.get(at.parent_id);
    if (!parent) break;
    at = parent;
  }
  return depth;
}

/** Each gallery's direct children, by parent id: built once per tree (O(N)), then every lookup is O(answer). */
export type ChildrenIndex = ReadonlyMap<string, readonly Gallery[]>;

export function childrenIndex(galleries: readonly Gallery[]): ChildrenIndex {
  const index = new Map<string, Gallery[]>();
  for (const g of galleries) {
    if (g.parent_id === null) continue;
    const kids = index.get(g.parent_id);
    if (kids) kids.push(g);
    else index.set(g.parent_id, [g]);
  }
  return index;
}

/** The gallery's direct children. */
export function childrenOf(tree: readonly Gallery[] | ChildrenIndex, id: string): Gallery[] {
  if (Array.isArray(tree)) return tree.filter((g) => g.parent_id === id);
  return [...((tree as ChildrenIndex).get(id) ?? [])];
}

/**
 * The gallery and every gallery below it, breadth first (O(subtree) with an index; given the
 * galleries, the index is built first: O(N)). `skip`: ids not to enter (nor return), so several
 * subtrees can be walked without walking twice what they share.
 */
export function subtreeOf(tree: readonly Gallery[] | ChildrenIndex, id: string, skip?: { has(id: string): boolean }): string[] {
  const index = Array.isArray(tree) ? childrenIndex(tree) : (tree as ChildrenIndex);
  if (skip?.has(id)) return [];
  const out = [id];
  const seen = new Set(out); // a damaged tree with a cycle ends too
  for (let i = 0; i < out.length; i++) {
    for (const g of index.get(out[i]!) ?? []) {
      if (seen.has(g.id) || skip?.has(g.id)) continue;
      seen.add(g.id);
      out.push(g.id);
    }
  }
  return out;
}

/** How tall the subtree under (and including) the gallery is (1: no children); O(subtree), no recursion. */
export function heightOf(tree: readonly Gallery[] | ChildrenIndex, id: string): number {
  const index = Array.isArray(tree) ? childrenIndex(tree) : (tree as ChildrenIndex);
  let height = 0;
  const seen = new Set([id]);
  for (let level = [id]; level.length > 0 && height <= GALLERY_LIMITS.depth + 1; height++) {
    level = level.flatMap((at) => (index.get(at) ?? []).map((g) => g.id)).filter((g) => !seen.has(g) && seen.add(g));
  }
  return height;
}

/** Member statuses, strongest first: a gallery inside several shared subtrees takes the strongest. */
export const GRANT_STRENGTH: readonly MemberStatus[] = ['accepted', 'pending', 'rejected'];

/**
 * The galleries below (and including) each shared gallery, each once, with the strongest status
 * of the shares it sits in (GRANT_STRENGTH): `roots` are one owner's shared galleries with the
 * project's answer. O(N) for the tree's index plus O(galleries reached): the shares are walked
 * strongest first and no walk enters a gallery an earlier one reached (whose whole subtree that
 * walk reached too, with a status at least as strong).
 */
export function expandShares(tree: readonly Gallery[] | ChildrenIndex, roots: readonly { gallery_id: string; status: MemberStatus }[]): Map<string, MemberStatus> {
  const index = Array.isArray(tree) ? childrenIndex(tree) : (tree as ChildrenIndex);
  const out = new Map<string, MemberStatus>();
  const ordered = [...roots].sort((a, b) => GRANT_STRENGTH.indexOf(a.status) - GRANT_STRENGTH.indexOf(b.status));
  for (const root of ordered) {
    for (const id of subtreeOf(index, root.gallery_id, out)) out.set(id, root.status);
  }
  return out;
}
