/** Which subscriptions an event goes to: event type patterns, filters, and visibility. */
import type { Caller } from '../caller.js';
import type { ImageDoc } from '../../schemas/image.js';
import type { GalleryGrant } from '../ports.js';
import type { Subscription } from './model.js';
import { canSeeImage } from './visibility.js';

/** The event told to the image's owner (and admins) only. */
export const DELETED = 'image.deleted';

/**
 * Who hears of a membership event (image.member.*): the image's owner and administrators as of
 * any event ('as-usual'); the member project it is about while it is a member, whatever its
 * answer ('told': its invitation and its own answers; Glance shows a shared image to its pending
 * and rejected members by id); no other project ('not-told': members are not told of each other,
 * as Glance shows a member its own membership only). A project no longer a member is 'as-usual'.
 */
export function membershipAudience(type: string, data: unknown, projectId: string, ownerOrAdmin: boolean, doc: ImageDoc | null): 'told' | 'not-told' | 'as-usual' {
  if (ownerOrAdmin || !type.startsWith('image.member.')) return 'as-usual';
  const about = typeof data === 'object' && data !== null ? (data as { member_id?: unknown }).member_id : undefined;
  if (about !== projectId) return 'not-told';
  return doc?.members?.some((m) => m.member_id === projectId) ? 'told' : 'as-usual';
}

export function eventMatches(patterns: string[], type: string): boolean {
  return patterns.some((p) => p === type || (p.endsWith('.*') && type.startsWith(p.slice(0, -1))));
}

/** The caller a subscription acts as when it looks at an image. */
export function subscriberCaller(sub: Subscription): Caller {
  return { project_id: sub.project_id, user_id: sub.user_id, roles: sub.all_projects ? ['admin'] : [] };
}

/**
 * Whether `sub` is told about an event of `type` on this image. An image's deletion is told to
 * its owner's subscriptions and admin ones only, whether or not the image is purged yet (`doc`
 * null) when the event is fanned out: so who hears of it does not depend on that timing.
 * `grants`: the galleries shared with the subscription's project (core/event-audience.ts);
 * `toldAnyway`: seen or not, it is told (its own membership: membershipAudience).
 */
export function subscriptionWants(sub: Subscription, type: string, doc: ImageDoc | null, imageId: string, owner: string | null, grants: readonly GalleryGrant[] = [], toldAnyway = false): boolean {
  if (!sub.enabled || !eventMatches(sub.events, type)) return false;
  const f = sub.filters;
  if (f.image_ids?.length && !f.image_ids.includes(imageId)) return false;
  const ownerOrAdmin = sub.all_projects || (owner !== null && owner === sub.project_id);
  if (!doc) return ownerOrAdmin && !f.tags?.length && !f.name_prefix && !f.visibility?.length;
  if (!toldAnyway && (type === DELETED ? !ownerOrAdmin : !canSeeImage(subscriberCaller(sub), doc, grants))) return false;
  if (f.visibility?.length && !f.visibility.includes(doc.visibility)) return false;
  if (f.tags?.length && !f.tags.every((t) => doc.tags.includes(t))) return false;
  if (f.name_prefix && !(doc.name ?? '').startsWith(f.name_prefix)) return false;
  return true;
}
