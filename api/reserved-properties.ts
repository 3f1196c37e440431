/**
 * Property names a client may not set, as Glance refuses them (glance/api/v2/images.py,
 * RequestDeserializer): `_disallowed_properties` and `_readonly_properties` ("is read-only"),
 * `_reserved_properties` and the `os_glance` namespace ("is reserved"); all with 403. PIR adds its
 * own read-only fields (`owner`, `pir_*`) and `locations`, which it does not support.
 */
import { forbidden, type PirError } from '../core/errors.js';
import { READ_ONLY_FIELDS } from '../schemas/image.js';

const READ_ONLY = new Set([...READ_ONLY_FIELDS, 'stores', 'owner']);
const RESERVED = new Set(['location', 'deleted', 'deleted_at']);
const RESERVED_NAMESPACES = ['os_glance'];

/** The refusal for setting `name` on an image, or null when it may be set. */
export function refusalForProperty(name: string): PirError | null {
  if (READ_ONLY.has(name) || name.startsWith('pir_')) return forbidden('read_only_property', `Attribute '${name}' is read-only; leave it out of the request.`);
  if (RESERVED.has(name) || RESERVED_NAMESPACES.some((ns) => name.startsWith(ns))) {
    return forbidden('reserved_property', `Attribute '${name}' is reserved (as in Glance: location, deleted, deleted_at and os_glance*); choose another name.`);
  }
  return null;
}
