/**
 * Bounds on an image's metadata, as Glance sets them (image_property_quota = 128 extra
 * properties, names of at most 255 characters, image_tag_quota = 128), plus one Glance leaves to
 * its database: all extra properties together hold at most 64 KiB. These bounds keep a listing
 * page of 1000 images within tens of MiB; the list route also caps a page's size in bytes.
 */
import { PirError, badRequest } from './errors.js';

export const METADATA_LIMITS = {
  maxProperties: 128,
  maxPropertyNameLength: 255,
  maxPropertyValueLength: 65_535,
  /** UTF-8 bytes of every extra property's name and value, summed. */
  maxPropertiesBytes: 64 * 1024,
  maxTags: 128,
  maxTagLength: 255,
};

export function assertMetadataBounds(properties: Record<string, string>, tags: string[] = []): void {
  const names = Object.keys(properties);
  if (names.length > METADATA_LIMITS.maxProperties) {
    throw new PirError('too_large', 'too_many_properties', `An image holds at most ${METADATA_LIMITS.maxProperties} extra properties (this one would have ${names.length}); remove some.`);
  }
  let bytes = 0;
  for (const name of names) {
    if (name.length > METADATA_LIMITS.maxPropertyNameLength) throw badRequest('property_name_too_long', `Property names are at most ${METADATA_LIMITS.maxPropertyNameLength} characters.`);
    const value = properties[name];
    if (value.length > METADATA_LIMITS.maxPropertyValueLength) throw badRequest('property_value_too_long', `Property '${name}' is longer than ${METADATA_LIMITS.maxPropertyValueLength} characters.`);
    bytes += Buffer.byteLength(name) + Buffer.byteLength(value);
  }
  if (bytes > METADATA_LIMITS.maxPropertiesBytes) {
    throw new PirError('too_large', 'properties_too_large', `An image's extra properties hold at most ${METADATA_LIMITS.maxPropertiesBytes} bytes in all (names and values, UTF-8); these hold ${bytes}. Keep large data out of image properties.`);
  }
  if (tags.length > METADATA_LIMITS.maxTags) throw new PirError('too_large', 'too_many_tags', `An image holds at most ${METADATA_LIMITS.maxTags} tags.`);
  for (const tag of tags) {
    if (tag.length > METADATA_LIMITS.maxTagLength) throw badRequest('tag_too_long', `Tags are at most ${METADATA_LIMITS.maxTagLength} characters.`);
  }
}
