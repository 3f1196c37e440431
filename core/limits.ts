/**
 * Bounds on what a client may store or send, with Glance's defaults where Glance has one
 * (glance/common/config.py: image_property_quota, image_tag_quota, image_member_quota = 128).
 * One module, so every check (API validation, the entity's field rules, the published
 * schemas) reads the same numbers.
 */
export const LIMITS = Object.freeze({
  /** Extra properties per image (Glance image_property_quota). Over it: 413. */
  imageProperties: 128,
  /** Tags per image (Glance image_tag_quota). Over it: 413. */
  imageTags: 128,
  /** Members per image (Glance image_member_quota). Over it: 413. */
  imageMembers: 128,
  /** name, tag, property key, owner and member id lengths (Glance's columns are 255). */
  nameLength: 255,
  tagLength: 255,
  propertyKeyLength: 255,
  memberIdLength: 255,
  /** One extra property's value (Glance stores them as TEXT, 65535 bytes). */
  propertyValueLength: 65535,
  /** All extra properties of an image together: names and values, UTF-8 bytes (Glance leaves this to its database). */
  propertiesTotalBytes: 64 * 1024,
  /** A JSON request body (image data is streamed past the body parser). */
  jsonBodyBytes: 1024 * 1024,
  /** Operations in one PATCH request. */
  patchOperations: 256,
  /** Largest min_disk (GiB) and min_ram (MiB): Glance's columns are 32-bit integers. */
  minDiskOrRam: 2 ** 31 - 1,
  /** Live share links per image (api/routes/share-links.ts). */
  shareLinksPerImage: 100,
  /** Longest share link life, in seconds (30 days). */
  shareLinkMaxSeconds: 30 * 86400,
  /** Webhooks per project: each is outbound traffic PIR sends for the project. */
  webhooksPerProject: 100,
});

/**
 * A text's length in characters (Unicode code points), as Glance's jsonschema and Python count
 * it: `String.length` counts UTF-16 units, so an emoji would count twice against a limit.
 */
export function characters(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}
