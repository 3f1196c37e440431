/**
 * Who is told about an image: the policy module's visibility (owner, public, community;
 * admins all), narrowed for shared images to members that accepted (Glance shows a shared
 * image to pending and rejected members by id, but they did not ask to receive it). An image
 * in a gallery shared with the project counts as shared with it, with the project's answer to
 * the gallery (README "Gallery sharing"): `grants` are the project's, from core/catalog.ts.
 */
import type { Caller } from '../caller.js';
import { canSee, inGalleryOf, isAdminCaller, membershipOf } from '../policy.js';
import type { GalleryGrant } from '../ports.js';
import { GALLERY_PROPERTY } from '../gallery-rules.js';
import type { ImageDoc } from '../../schemas/image.js';

export function canSeeImage(caller: Caller, doc: ImageDoc, grants: readonly GalleryGrant[] = []): boolean {
  const accepted = new Set(grants.filter((g) => g.status === 'accepted').map((g) => g.gallery_id));
  if (!canSee(caller, doc, accepted)) return false;
  const onlyAsMember = !isAdminCaller(caller) && doc.owner !== null && doc.owner !== caller.project_id
    && doc.visibility !== 'public' && doc.visibility !== 'community';
  return !onlyAsMember || membershipOf(caller, doc)?.status === 'accepted' || inGalleryOf(doc, accepted);
}

/** Whether the project's gallery grants could change canSeeImage's answer (else they need not be loaded). */
export function galleryMayGrant(caller: Caller, doc: ImageDoc): boolean {
  return doc.properties[GALLERY_PROPERTY] !== undefined && !canSeeImage(caller, doc);
}
