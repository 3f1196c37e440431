/**
 * PATCH /v2/images/{id}: Glance's JSON-patch dialects, parsed and applied to an image draft.
 *
 * application/openstack-images-v2.1-json-patch (what clients send):
 *   [{"op": "add"|"replace"|"remove", "path": "/<attribute or property>", "value": …}]
 * application/openstack-images-v2.0-json-patch (the older form): [{"replace": "/name", "value": …}]
 *
 * Semantics as glance/api/v2/images.py: `add` sets a base attribute or adds/overwrites an extra
 * property, except in v2.0 (JSON-patch draft 4), where `add` of a base attribute (which every image
 * has) or of a property the image has is 409; `replace` of a missing extra property is 409; `remove` of a base attribute is 403,
 * of a missing property 409; read-only and reserved names are 403; paths are one level deep
 * (`/tags` replaces the whole list). Who may change visibility and owner is the policy's
 * business (core/image-service.ts looks at what changed).
 */
import type { ImageDoc } from '../schemas/image.js';
import { fail } from './error-catalog.js';
import { checkSettable, isWritableField, setField, setProperty } from './image-entity.js';
import { LIMITS } from './limits.js';
import type { Gallery } from './catalog-ports.js';
import { GALLERY_PROPERTY } from './gallery-rules.js';

export const PATCH_MEDIA_TYPES = ['application/openstack-images-v2.1-json-patch', 'application/openstack-images-v2.0-json-patch'] as const;
export type PatchMediaType = (typeof PATCH_MEDIA_TYPES)[number];

export interface PatchOp {
  op: 'add' | 'replace' | 'remove';
  /** The attribute or property name (the decoded path's single segment). */
  name: string;
  value?: unknown;
  /** v2.0 (draft 4) `add`: the name must not exist yet (a base attribute always does): else 409. */
  mustBeNew?: boolean;
}

const OPS = new Set(['add', 'replace', 'remove']);
const invalid = (message: string) => fail('invalid_patch', `${message} A PATCH body is a JSON list like [{"op": "replace", "path": "/name", "value": "new name"}].`);

/** Decodes a JSON pointer of one segment ("/os_distro", "/a~1b" → "a/b"). */
function pathName(path: unknown): string {
  if (typeof path !== 'string' || !path.startsWith('/')) throw invalid(`Each operation needs a "path" that starts with '/' (got ${JSON.stringify(path)?.slice(0, 80)}).`);
  const segments = path.slice(1).split('/');
  if (segments.length !== 1) throw invalid(`Nested paths are not allowed ('${path.slice(0, 80)}'): name the attribute or property itself, e.g. /tags for the whole tag list.`);
  // RFC 6901: '~' only starts '~0' or '~1' (Glance refuses any other, as a bad pointer).
  if (/~(?![01])/.test(segments[0])) throw invalid(`The path '${path.slice(0, 80)}' has a '~' that is not '~0' (a '~') or '~1' (a '/'), as JSON pointers write them.`);
  const name = segments[0].replace(/~1/g, '/').replace(/~0/g, '~');
  if (name.length === 0) throw invalid('A path names an attribute or property: /name, /os_distro, /tags.');
  return name;
}

/**
 * Fields of PIR's image view that are no image attributes (api/glance-view.ts): its progress, and
 * `stores` (where the copies are; Glance's PATCH does not refuse it either). openstacksdk keeps
 * the fields it does not know as properties and sends them back in its PATCH.
 */
const VIEW_ONLY_FIELDS = new Set(['pir_stage', 'pir_pipeline', 'pir_failure', 'stores']);

export function parsePatch(body: unknown, mediaType: PatchMediaType): PatchOp[] {
  if (!Array.isArray(body)) throw invalid('The body must be a JSON list of operations.');
  if (body.length > LIMITS.patchOperations) throw invalid(`At most ${LIMITS.patchOperations} operations per PATCH.`);
  return body.map((raw): PatchOp => {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalid('Each operation must be a JSON object.');
    const entry = raw as Record<string, unknown>;
    let op: string;
    let path: unknown;
    if (mediaType === 'application/openstack-images-v2.0-json-patch') {
      const ops = Object.keys(entry).filter((k) => OPS.has(k));
      if (ops.length !== 1) throw invalid('Each v2.0 operation has exactly one of "add", "replace", "remove" naming its path.');
      op = ops[0];
      path = entry[op];
    } else {
      if (typeof entry.op !== 'string') throw invalid('Each operation needs an "op": add, replace or remove.');
      op = entry.op;
      path = entry.path;
    }
    if (!OPS.has(op)) throw invalid(`Operation '${op.slice(0, 40)}' is not supported; use add, replace or remove.`);
    const name = pathName(path);
    if (op !== 'remove' && !('value' in entry)) throw invalid(`Operation '${op}' on ${path as string} needs a "value".`);
    const mustBeNew = op === 'add' && mediaType === 'application/openstack-images-v2.0-json-patch';
    return { op: op as PatchOp['op'], name, ...(op !== 'remove' ? { value: entry.value } : {}), ...(mustBeNew ? { mustBeNew } : {}) };
  });
}

/** The gallery ids a PATCH places the image in (the service looks them up before applying it). */
export function galleriesNamed(ops: PatchOp[]): string[] {
  return ops.filter((o) => o.name === GALLERY_PROPERTY && typeof o.value === 'string').map((o) => o.value as string);
}

/**
 * Applies the operations in order; the first that fails stops the whole PATCH (nothing is written).
 * `galleries` holds the galleries galleriesNamed(ops) found (an image joins only one of its owner's).
 */
export function applyPatch(draft: ImageDoc, ops: PatchOp[], galleries: Map<string, Gallery> = new Map()): void {
  for (const { op, name, value, mustBeNew } of ops) {
    if (name === GALLERY_PROPERTY) {
      // The same rule as any property: only an image in a gallery has one to remove or replace.
      if (op !== 'add' && !Object.hasOwn(draft.properties, name)) {
        throw fail('property_missing', `Image ${draft.id} is in no gallery, so it has no ${name} to ${op}; use "add" to put it in one.`);
      }
      if (mustBeNew && Object.hasOwn(draft.properties, name)) throw alreadyPresent(name);
      setGallery(draft, op === 'remove' ? null : value, galleries);
      continue;
    }
    // PIR's progress fields are shown beside the image but are no attributes of it: SDKs that
    // diff the whole view to build a PATCH (openstacksdk) name them, so they are passed over.
    if (VIEW_ONLY_FIELDS.has(name)) continue;
    if (isWritableField(name)) {
      if (op === 'remove') throw fail('base_property_not_removable', `Property ${name} may not be removed; replace it instead.`);
      if (mustBeNew) throw alreadyPresent(name);
      setField(draft, name, value);
      continue;
    }
    checkSettable(name);
    const exists = Object.hasOwn(draft.properties, name);
    if (mustBeNew && exists) throw alreadyPresent(name);
    if (op === 'remove' || op === 'replace') {
      if (!exists) throw fail('property_missing', `Property ${name} does not exist on image ${draft.id}; use "add" to create it.`);
      if (op === 'remove') {
        delete draft.properties[name];
        continue;
      }
    }
    setProperty(draft, name, value);
  }
}

const alreadyPresent = (name: string) =>
  fail('property_exists', `Property ${name} already present: in a v2.0 (draft 4) JSON patch, "add" only creates; use "replace", or send application/openstack-images-v2.1-json-patch, where "add" sets.`);

/**
 * Puts the image in a gallery of its owner (a string id), or in none (null, or op remove).
 * Galleries are looked up by the caller; one the owner does not have is refused alike whether it
 * exists elsewhere or not, so a PATCH cannot probe for other projects' galleries.
 */
export function setGallery(draft: ImageDoc, value: unknown, galleries: Map<string, Gallery>): void {
  if (value === null) {
    delete draft.properties[GALLERY_PROPERTY];
    return;
  }
  if (typeof value !== 'string') throw fail('invalid_gallery', `'${GALLERY_PROPERTY}' is a gallery id (a string), or null for no gallery.`);
  const gallery = galleries.get(value);
  if (!gallery || gallery.owner !== draft.owner) {
    throw fail('invalid_gallery', `'${value.slice(0, 64)}' is not a gallery of the image's owner (${draft.owner ?? 'none'}); see GET /v2/galleries.`);
  }
  draft.properties[GALLERY_PROPERTY] = gallery.id;
}
