/**
 * Who may see an image, for webhooks: the one function the fan-out asks. It follows Glance's
 * rules (owner, public, community, accepted member; admin all) until core/policy.ts lands on
 * main, when this becomes a call to it.
 */
import { isAdmin, type Caller } from '../caller.js';
import type { ImageDoc } from '../../schemas/image.js';

export function canSeeImage(caller: Caller, doc: ImageDoc): boolean {
  if (isAdmin(caller)) return true;
  if (doc.owner !== null && doc.owner === caller.project_id) return true;
  if (doc.visibility === 'public' || doc.visibility === 'community') return true;
  return (doc.members ?? []).some((m) => m.member_id === caller.project_id && m.status === 'accepted');
}
