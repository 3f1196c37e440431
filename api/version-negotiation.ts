/**
 * Glance's version negotiation (its version_negotiation middleware), done on the URL before
 * routing: `/v2.N/…` for a version PIR implements is `/v2/…`; a request whose Accept is
 * `application/vnd.openstack.images-v2[.N]` may leave the version out of its path; `/versions/`
 * is `/versions`; and a request for a version PIR does not implement (`/v1/images`, `/v3/…`,
 * `/v2.99/…`) or for an image resource without one (`/images`) gets the version choices (300),
 * as Glance answers, instead of a 404 that says nothing of where to go.
 */

/** Where a request for an unknown version is sent: every method answers 300 with the versions. */
export const VERSION_CHOICES_PATH = '/.version-choices';

const VENDOR_MEDIA_TYPE = 'application/vnd.openstack.images-';
const VERSION_SEGMENT = /^\/v(\d+)(?:\.(\d+))?(?=\/|$)/;
/** Glance's resources, which a path without a version may only mean as a wrong version. */
const UNVERSIONED_ROOTS = /^\/(?:images|schemas|tasks|info|stores|metadefs|cache)(?:\/|$)/;

/**
 * The URL to route `url` to. `minors`: the v2 minor versions served (2.0 → 0 … 2.17 → 17).
 * Anything that is not about a version passes unchanged.
 */
export function negotiatedUrl(url: string, accept: string | undefined, minors: ReadonlySet<number>): string {
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  const query = q === -1 ? '' : url.slice(q);
  if (path === '/versions/') return `/versions${query}`;
  const served = (major: string, minor: string | undefined) => major === '2' && (minor === undefined || minors.has(Number(minor)));
  const inPath = VERSION_SEGMENT.exec(path);
  if (inPath) {
    if (!served(inPath[1]!, inPath[2])) return VERSION_CHOICES_PATH;
    return inPath[2] === undefined ? url : `/v2${path.slice(inPath[0].length)}${query}`;
  }
  if (accept?.startsWith(VENDOR_MEDIA_TYPE)) {
    const wanted = /^v(\d+)(?:\.(\d+))?$/.exec(accept.slice(VENDOR_MEDIA_TYPE.length).split(/[;,\s]/)[0]!);
    if (!wanted || !served(wanted[1]!, wanted[2])) return VERSION_CHOICES_PATH;
    return `/v2${path === '/' ? '' : path}${query}`;
  }
  return UNVERSIONED_ROOTS.test(path) ? VERSION_CHOICES_PATH : url;
}
