/**
 * Who may do what: Glance's default policies (glance/policies/image.py, base.py, tasks.py),
 * decided here and nowhere else. Routes never decide; the image service asks this module.
 *
 * Two questions, in Glance's order:
 *  1. May the caller see the image at all? (Glance's `is_image_visible` in the database layer.)
 *     No → 404 Not Found, never 403, so an image's existence does not leak.
 *  2. May the caller do this to an image it sees? (the policy rule) No → 403.
 *
 * Roles follow Keystone's default implications: admin implies member implies reader (a token
 * with `member` can read). An admin anywhere is an admin everywhere, as in Glance's check
 * strings (`role:admin`, no scope).
 */
import type { ImageDoc, ImageMember } from '../schemas/image.js';
import type { Caller } from './caller.js';
import { fail } from './error-catalog.js';
import { notFound } from './errors.js';
import { GALLERY_PROPERTY } from './gallery-rules.js';

export type Role = 'admin' | 'member' | 'reader';

const IMPLIED: Record<Role, Role[]> = { admin: ['admin', 'member', 'reader'], member: ['member', 'reader'], reader: ['reader'] };

/** Whether the caller holds `role`, directly or implied by a stronger one. */
export function hasRole(caller: Caller, role: Role): boolean {
  return caller.roles.some((r) => (IMPLIED as Record<string, Role[]>)[r.toLowerCase()]?.includes(role));
}

export const isAdminCaller = (caller: Caller) => hasRole(caller, 'admin');

/** Glance's service role (nova, cinder): not implied by any other role, and implying none. */
export function isServiceCaller(caller: Caller): boolean {
  return caller.roles.some((r) => r.toLowerCase() === 'service');
}

/** The caller's membership of the image, whatever its status. */
export function membershipOf(caller: Caller, doc: ImageDoc): ImageMember | undefined {
  return (doc.members ?? []).find((m) => m.member_id === caller.project_id);
}

/**
 * Glance's is_image_visible: admins see everything; an image without owner, public and
 * community images are seen by all; otherwise the owner sees it, and for a `shared` image so
 * does every member project (pending, accepted or rejected: Glance shows the image by id to
 * each; only the default list hides non-accepted ones).
 */
export function canSee(caller: Caller, doc: ImageDoc, viaGalleries?: ReadonlySet<string>): boolean {
  if (isAdminCaller(caller)) return true;
  if (doc.owner === null) return true;
  if (doc.visibility === 'public' || doc.visibility === 'community') return true;
  if (doc.owner === caller.project_id) return true;
  if (doc.visibility === 'shared' && membershipOf(caller, doc) !== undefined) return true;
  // In a gallery shared with the caller's project (any answer, as an image member): README "Gallery sharing".
  return inGalleryOf(doc, viaGalleries);
}

/** Whether the image sits in one of these galleries (those shared with a project: core/catalog.ts grants). */
export function inGalleryOf(doc: ImageDoc, galleries: ReadonlySet<string> | undefined): boolean {
  if (!galleries || galleries.size === 0) return false;
  const gallery = doc.properties?.[GALLERY_PROPERTY];
  return gallery !== undefined && galleries.has(gallery);
}

/** The actions Glance's policy file names, and PIR's rule for each. */
export type Action =
  | 'add_image' | 'get_image' | 'get_images' | 'modify_image' | 'delete_image' | 'upload_image' | 'download_image'
  | 'publicize_image' | 'communitize_image' | 'deactivate' | 'reactivate'
  | 'add_member' | 'get_member' | 'get_members' | 'modify_member' | 'delete_member'
  | 'tasks_api_access' | 'get_image_tasks' | 'get_image_revisions' | 'copy_image' | 'delete_image_location' | 'stores_info_detail'
  | 'add_image_location' | 'fetch_image_location';

/** What a rule looks at: the caller, the image's owner, and (for member rules) the member id. */
export interface Target {
  owner: string | null;
  member_id?: string;
}

type Rule = (caller: Caller, target: Target) => boolean;

const admin: Rule = (c) => hasRole(c, 'admin');
const projectMember: Rule = (c, t) => hasRole(c, 'member') && t.owner === c.project_id;
const projectReader: Rule = (c, t) => hasRole(c, 'reader') && t.owner === c.project_id;
const service: Rule = (c) => isServiceCaller(c);
const either = (...rules: Rule[]): Rule => (c, t) => rules.some((r) => r(c, t));

/**
 * The rules. Reading an image the caller can see needs `reader` (Glance's
 * ADMIN_OR_PROJECT_READER_GET_IMAGE); downloading needs `member` (…_DOWNLOAD_IMAGE).
 * Deactivate and reactivate are admin-only unless PIR_DEACTIVATE_POLICY=owner (setDeactivatePolicy).
 */
export const RULES: Record<Action, Rule> = {
  add_image: either(admin, projectMember),
  get_image: either(admin, (c) => hasRole(c, 'reader')),
  get_images: either(admin, (c) => hasRole(c, 'reader')),
  modify_image: either(admin, projectMember),
  delete_image: either(admin, projectMember),
  upload_image: either(admin, projectMember),
  download_image: either(admin, (c) => hasRole(c, 'member')),
  publicize_image: admin,
  communitize_image: either(admin, projectMember),
  deactivate: admin,
  reactivate: admin,
  add_member: either(admin, projectMember),
  delete_member: either(admin, projectMember),
  // The owner's readers see every member; a member project sees its own record (the
  // members view in image-members narrows the list; here: who may look at all).
  get_members: either(admin, projectReader, (c, t) => hasRole(c, 'reader') && t.member_id === c.project_id),
  get_member: either(admin, projectReader, (c, t) => hasRole(c, 'reader') && t.member_id === c.project_id),
  // Only the member project (or an admin) answers an invitation.
  modify_member: either(admin, (c, t) => hasRole(c, 'member') && t.member_id === c.project_id),
  tasks_api_access: admin,
  // An image's tasks (GET /v2/images/{id}/tasks, with who started them) are its owner project's
  // and administrators' (Glance's _is_task_visible); others who may see the image get none.
  get_image_tasks: either(admin, (c, t) => t.owner === c.project_id),
  // An image's metadata history (PIR extension) holds its past members and the values of
  // properties removed before it was shared: its owner project's and administrators' only.
  get_image_revisions: either(admin, (c, t) => t.owner === c.project_id),
  // Multi-store: Glance's defaults (glance/policies/image.py, discovery.py): copying and deleting
  // a store's copy are admin-only; the stores' details are for admins and service users.
  copy_image: admin,
  delete_image_location: admin,
  stores_info_detail: either(admin, service),
  // The locations API (glance/policies/image.py): a service user needs no other role, and (as in
  // Glance, which looks the image up without get_image) no reader role to use it on an image its
  // project sees. Adding s3:// locations takes more: core/external-location.ts enforceAddLocation.
  add_image_location: either(admin, service, projectMember),
  fetch_image_location: either(admin, service),
};

export function allowed(caller: Caller, action: Action, target: Target): boolean {
  return RULES[action](caller, target);
}

const WHY: Partial<Record<Action, string>> = {
  add_image: 'Creating images needs the member role, for images owned by your own project.',
  publicize_image: "Only an administrator can make an image public; use 'community' or 'shared' to offer it to other projects.",
  deactivate: 'Only an administrator can deactivate an image.',
  reactivate: 'Only an administrator can reactivate an image.',
  download_image: 'Downloading needs the member role (readers see metadata only).',
  copy_image: 'Only an administrator can copy an image into more stores (copy-image).',
  delete_image_location: "Only an administrator can delete an image's copy from a store.",
  stores_info_detail: "Only an administrator or a service user can see the stores' details; GET /v2/info/stores lists their ids.",
  add_image_location: "Only the image's owner (member role), a service user or an administrator may add a location.",
  fetch_image_location: 'The locations API is for service users and administrators.',
  get_image_revisions: "An image's revisions (its past members, and property values removed before it was shared) are for its owner project and administrators; GET /v2/images/{id} shows its metadata now.",
  tasks_api_access: "The tasks API is for administrators (Glance's tasks_api_access); see an image's own tasks at GET /v2/images/{id}/tasks.",
  modify_member: 'A membership is accepted or rejected by the member project itself, with the member role (or by an administrator); readers only look.',
};

/**
 * PIR_DEACTIVATE_POLICY. `admin`, the default: administrators only (issue 7; Glance's rule before
 * Wallaby). `owner`: also the owner project's members (Glance's default since Wallaby, which
 * tempest's test_deactivate_reactivate_image expects). Downloading a deactivated image stays
 * administrators' either way, as in Glance. Process-wide, as Glance's policy file is.
 */
export type DeactivatePolicy = 'admin' | 'owner';

export function setDeactivatePolicy(policy: DeactivatePolicy): void {
  const rule = policy === 'owner' ? either(admin, projectMember) : admin;
  RULES.deactivate = rule;
  RULES.reactivate = rule;
  const who = policy === 'owner' ? "A member of the image's owner project or an administrator" : 'Only an administrator';
  WHY.deactivate = `${who} can deactivate an image.`;
  WHY.reactivate = `${who} can reactivate an image.`;
}

/** The actions that read: refused for want of the reader role. */
const READS = new Set<Action>(['get_image', 'get_images']);

/** Throws 403 unless the caller may do `action` on `target`. */
export function enforce(caller: Caller, action: Action, target: Target): void {
  if (allowed(caller, action, target)) return;
  const why = WHY[action] ?? (READS.has(action) || target.owner === caller.project_id
    ? `Your roles (${caller.roles.join(', ') || 'none'}) do not allow ${action}; it needs the ${READS.has(action) ? 'reader' : 'member'} role.`
    : `Only the owner project (${target.owner ?? 'none'}) or an administrator may ${action.replace('_', ' ')}.`);
  throw fail('policy_denied', `Policy does not allow ${action}: ${why}`);
}

/**
 * The image, if the caller may see it; otherwise 404, exactly as for an image that does not exist.
 * As Glance's ImageAPIPolicy: a caller who may not read an image (get_image: no reader role) is
 * told it does not exist either, unless the rule of what it asks (`action`) lets it anyway (a
 * service user's locations API calls); that rule itself is enforced after, with 403.
 */
export function requireVisible(caller: Caller, doc: ImageDoc | null, id: string, viaGalleries?: ReadonlySet<string>, action: Action = 'get_image'): ImageDoc {
  if (!doc || doc.status === 'deleted' || !canSee(caller, doc, viaGalleries)) throw notFound(`Image ${id}`);
  if (!allowed(caller, 'get_image', { owner: doc.owner }) && !allowed(caller, action, { owner: doc.owner })) throw notFound(`Image ${id}`);
  return doc;
}
