/**
 * Galleries as pure rules: the image property that places an image in a gallery, what a gallery
 * name may be, and paths and subtrees computed from a project's galleries (core/gallery-service.ts
 * loads them; a project's tree is small and capped).
 */
import type { Gallery } from './catalog-ports.js';
import { fail } from './error-catalog.js';

/** The extra property holding an image's gallery id (PIR's namespace: clients set it only through its own rules). */
export const GALLERY_PROPERTY = 'pir_gallery_id';

export const GALLERY_LIMITS = {
  nameLength: 255,
  perProject: 10_000,
  depth: 32,
};

export function checkGalleryName(name: unknown): string {
  if (typeof name !== 'string') throw fail('bad_gallery', "A gallery's 'name' is a string.");
  const trimmed = name.trim();
  if (trimmed.length === 0 || trimmed.length > GALLERY_LIMITS.nameLength) throw fail('bad_gallery', `A gallery name is 1 to ${GALLERY_LIMITS.nameLength} characters.`);
  if (trimmed.includes('/')) throw fail('bad_gallery', "A gallery name may not hold '/': it separates the names of a gallery's path (linux/debian/12).");
  if (trimmed === '.' || trimmed === '..') throw fail('bad_gallery', "'.' and '..' are no gallery names.");
  if (/[\u0000-\u001f\u007f]/.test(trimmed)) throw fail('bad_gallery', 'A gallery name may not hold control characters.');
  return trimmed;
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

/** The gallery's direct children. */
export function childrenOf(galleries: Gallery[], id: string): Gallery[] {
  return galleries.filter((g) => g.parent_id === id);
}

/** The gallery and every gallery below it. */
export function subtreeOf(galleries: Gallery[], id: string): string[] {
  const out = [id];
  for (let i = 0; i < out.length; i++) for (const g of galleries) if (g.parent_id === out[i]) out.push(g.id);
  return out;
}

/** How tall the subtree under (and including) the gallery is (1: no children). */
export function heightOf(galleries: Gallery[], id: string): number {
  const kids = childrenOf(galleries, id);
  return 1 + (kids.length ? Math.max(...kids.map((k) => heightOf(galleries, k.id))) : 0);
}
