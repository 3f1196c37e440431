/**
 * Who is told about an image: the policy module's visibility (owner, public, community;
 * admins all), narrowed for shared images to members that accepted (Glance shows a shared
 * image to pending and rejected members by id, but they did not ask to receive it).
 */
import type { Caller } from '../caller.js';
import { canSee, isAdminCaller, membershipOf } from '../policy.js';
import type { ImageDoc } from '../../schemas/image.js';

export function canSeeImage(caller: Caller, doc: ImageDoc): boolean {
  if (!canSee(caller, doc)) return false;
  const onlyAsMember = !isAdminCaller(caller) && doc.owner !== null && doc.owner !== caller.project_id
    && doc.visibility !== 'public' && doc.visibility !== 'community';
  return !onlyAsMember || membershipOf(caller, doc)?.status === 'accepted';
}
