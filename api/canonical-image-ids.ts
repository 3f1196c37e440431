/**
 * Image ids in request paths, in one spelling. UUIDs are case-insensitive on input (RFC 9562
 * §4) and PIR stores them in lower case (ImageService.create lowers a chosen id), so an upper-case
 * spelling of an image's id names that image, as it does in Glance on MySQL, instead of 404.
 * Only the positions that hold an image id: a member id or a tag in the same path is kept as sent.
 */
const IMAGE_ID_IN_PATH = /^(\/v2\/images\/|\/v2\/stores\/[^/?]+\/)([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(?=[/?]|$)/;

export function canonicalImageIds(url: string): string {
  const found = IMAGE_ID_IN_PATH.exec(url);
  if (!found || !/[A-F]/.test(found[2]!)) return url;
  return found[1]! + found[2]!.toLowerCase() + url.slice(found[0].length);
}
