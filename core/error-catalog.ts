/**
 * Every error code PIR answers with, declared once: its HTTP status, and whether it is a
 * refusal (the client's input is at fault: fix the request) or a fault (PIR's side: retry, or
 * tell the operator). The API maps errors through this table (api/error-handler.ts); the
 * upload path uses it to tell a refused image (400) from a failed one (500).
 *
 * test/unit/core/error-catalog.test.ts checks that the catalog, the code (every code used is
 * declared here, every code declared is used) and README's error table agree. Codes are stable
 * API: never rename one, add a new one.
 */
import { FINDING_CODES, VERDICT_CODES } from '../formats/codes.js';
import { PirError, type ErrorKind } from './errors.js';

export type ErrorClass = 'refusal' | 'fault';

/**
 * What the owner of an image the pipeline ended should do about it (the console's advice,
 * console/src/explain.ts): `file` — the file's contents are the problem (fix, convert or
 * re-export it); `source` — the URL or registered location could not be read as it should
 * (check it, its server, and retry); `resend` — the bytes were corrupted on the way (upload
 * them again). Absent: a refusal's message says what to fix; a fault is PIR's (retry, or tell
 * the operator).
 */
export type Remedy = 'file' | 'source' | 'resend';

export interface ErrorSpec {
  status: number;
  class: ErrorClass;
  meaning: string;
  remedy?: Remedy;
  /**
   * A fault PIR expects now and then and that a retry mends (contention that outlasted its
   * wait, a shutdown): the API logs it at warn, so error stays for what an operator must look at.
   */
  expected?: true;
}

const refusal = (status: number, meaning: string, remedy?: Remedy): ErrorSpec => ({ status, class: 'refusal', meaning, ...(remedy && { remedy }) });
const fault = (status: number, meaning: string, remedy?: Remedy): ErrorSpec => ({ status, class: 'fault', meaning, ...(remedy && { remedy }) });
const expectedFault = (status: number, meaning: string): ErrorSpec => ({ ...fault(status, meaning), expected: true });

/** Errors of the HTTP API and the domain. */
export const API_ERRORS = {
  // identity and routing
  token_missing: refusal(401, 'No X-Auth-Token header.'),
  token_invalid: refusal(401, 'The token is not valid here (unknown, expired or revoked).'),
  token_unscoped: refusal(403, 'A Keystone token without a project (system- or domain-scoped); get a project-scoped token.'),
  credentials_refused: refusal(401, 'Keystone refused the username, password and project of a sign-in (POST /auth/tokens).'),
  identity_unavailable: fault(503, 'Keystone is unreachable or refuses PIR its own credentials.'),
  no_route: refusal(404, 'No such method and path in the Image API v2 (or no such console asset).'),
  method_not_allowed: refusal(405, 'The path exists but does not take this method; the Allow header lists those it takes (as Glance).'),
  bad_url: refusal(400, 'The URL is malformed: bad percent-encoding (or not UTF-8) in the path or the query string.'),
  uri_too_long: refusal(414, 'A path segment is longer than 1024 characters.'),
  // request shape
  invalid_request: refusal(400, 'The body or a parameter does not match the request schema.'),
  invalid_json: refusal(400, 'The body is not valid JSON.'),
  forbidden_json_member: refusal(400, 'The JSON body has a member named __proto__, or a constructor object with a prototype member (anywhere in it): PIR refuses those names.'),
  body_too_large: refusal(413, 'The JSON body is larger than PIR accepts.'),
  bad_content_type: refusal(415, 'The Content-Type is not the one this call takes.'),
  bad_header: refusal(400, 'A header has a malformed value.'),
  bad_content_md5: refusal(400, 'Content-MD5 is neither base64 (RFC 1864) nor hex of 16 bytes.'),
  bad_digest: refusal(400, 'Repr-Digest or Content-Digest (header or trailer) is malformed, or two digests of the upload disagree.'),
  no_body: refusal(400, 'The call needs a body and none was sent.'),
  bad_request: refusal(400, 'A malformed request the router refused.'),
  headers_too_large: refusal(431, 'The request line and headers are larger than 16 KiB.'),
  malformed_request: refusal(400, 'The request is not valid HTTP/1.1: unreadable, not HTTP/1.x, an HTTP/1.1 request without Host, or several Host lines.'),
  expectation_failed: refusal(417, 'The Expect header asks for something other than 100-continue.'),
  transfer_coding_unsupported: fault(501, 'The request body has a transfer coding other than chunked (Transfer-Encoding: gzip, chunked); send the bytes as they are.'),
  request_timeout: refusal(408, 'The request headers did not all arrive in time.'),
  body_timeout: refusal(408, 'A JSON request body did not all arrive within 60 s; the connection is closed.'),
  chunk_extensions_too_large: refusal(413, 'The chunk extensions of the body are too large.'),
  client_aborted: refusal(400, 'The client closed the connection before the request was complete (logged; never reaches a client).'),
  // policy and visibility
  not_found: refusal(404, 'No such image (or not visible to the caller: Glance answers 404, never 403, for what you cannot see).'),
  policy_denied: refusal(403, "The caller's roles or project do not allow this action (Glance's default policies)."),
  // image fields
  duplicate_id: refusal(409, 'An image with the requested id exists, or existed and was deleted (ids are never reused).'),
  reserved_property: refusal(403, 'The property name is reserved (os_glance_*, location, deleted, deleted_at, and pir_* other than pir_detected_*).'),
  read_only_property: refusal(403, 'The attribute is read-only (set by PIR).'),
  property_name_too_long: refusal(400, 'A property name is longer than 255 characters.'),
  invalid_value: refusal(400, 'A field has a value of the wrong type, out of range, or too long.'),
  property_value_too_long: refusal(400, 'An extra property value is longer than 65535 characters.'),
  too_many_properties: refusal(413, 'The image would have more than 128 extra properties.'),
  properties_too_large: refusal(413, "The image's extra properties would hold more than 64 KiB (names and values, UTF-8)."),
  too_many_tags: refusal(413, 'The image would have more than 128 tags.'),
  tag_too_long: refusal(400, 'A tag is longer than 255 characters.'),
  field_frozen: refusal(403, 'disk_format and container_format can only change while the image is queued.'),
  base_property_not_removable: refusal(403, 'A base attribute cannot be removed (replace it instead).'),
  property_missing: refusal(409, 'PATCH replace/remove of an extra property the image does not have.'),
  property_exists: refusal(409, 'A v2.0 (draft 4) JSON-patch add of a base attribute or of an extra property the image already has (v2.1 add sets).'),
  invalid_patch: refusal(400, 'The JSON-patch document is malformed.'),
  patch_media_type: refusal(415, "PATCH needs Content-Type application/openstack-images-v2.1-json-patch (or v2.0); the answer's Accept-Patch names both."),
  tag_not_found: refusal(404, 'DELETE of a tag the image does not have.'),
  // lifecycle
  protected_image: refusal(403, 'The image is protected; set protected=false first.'),
  invalid_status: refusal(409, "The image's status does not allow this."),
  cannot_deactivate: refusal(403, 'Only an active image can be deactivated.'),
  cannot_reactivate: refusal(403, 'Only a deactivated image can be reactivated.'),
  image_deactivated: refusal(403, 'The image is deactivated; only an administrator can download it.'),
  formats_required: refusal(400, 'disk_format and container_format must be set before an upload.'),
  import_formats_required: refusal(409, 'An import (glance-direct or web-download) or an added location needs disk_format and container_format set first (Glance answers 409).'),
  not_staged: refusal(409, 'glance-direct import needs staged data first.'),
  upload_superseded: refusal(409, 'The image changed while its data was arriving.'),
  unsupported_import_method: refusal(400, 'The import method is not offered here (see GET /v2/info/import).'),
  image_deleted: refusal(410, 'The image was deleted while it was being imported, or while its data was arriving (`PUT …/file` or `…/stage`; nothing of it is kept), as Glance\'s 410.'),
  // stores (Glance multi-store)
  unknown_store: refusal(400, 'With multi-store, X-Image-Meta-Store on an upload or stage, or GET …/file?prefer=, names a store that is not configured (GET /v2/info/stores); or ?prefer= is used without multi-store (the header is then ignored, as Glance).'),
  unknown_import_store: refusal(409, "With multi-store, an import's stores or X-Image-Meta-Store names a store that is not configured (GET /v2/info/stores); 409, as Glance's import answers it (one store ignores them, as Glance)."),
  body_not_expected: refusal(400, 'A body was sent to a call that takes none (DELETE /v2/stores/…, GET /v2/info/import, /v2/info/stores, /v2/info/stores/detail), as Glance\'s body_reject routes answer.'),
  bad_stores: refusal(400, 'With multi-store, all_stores is given together with stores or X-Image-Meta-Store, stores together with X-Image-Meta-Store, or stores is empty; or all_stores_must_succeed is false without multi-store.'),
  store_not_found: refusal(404, 'A store PIR looks up by id is not configured (internal: the API answers an unknown store in a URL path with store_unavailable).'),
  store_unavailable: refusal(409, "DELETE /v2/stores/{store_id}/… names a store that is not configured (GET /v2/info/stores); 409, as Glance's \"The selected store is not available on this node\"."),
  image_not_in_store: refusal(404, 'The image has no copy in that store.'),
  last_store: refusal(403, "The store holds the image's last copy; delete the image instead."),
  already_in_stores: refusal(400, "copy-image: a store it copies to (named in stores or X-Image-Meta-Store, else the default store) already holds the image (Glance: \"Image is already present at store\"); with all_stores, such stores are left out instead."),
  import_in_progress: refusal(409, 'copy-image: the image is still being placed in other stores (an import or copy is running); try again when os_glance_importing_to_stores is empty.'),
  // members
  members_only_shared: refusal(403, "Only images (and galleries) with visibility 'shared' take members."),
  member_exists: refusal(409, 'The project is already a member of the image.'),
  member_not_found: refusal(404, 'The project is not a member of the image (or the caller may not see that membership).'),
  too_many_members: refusal(413, 'The image would have more than 128 members.'),
  member_status_by_member_only: refusal(403, "Only the member project (or an administrator) sets a membership's status."),
  // quotas (Glance's unified-limit names)
  quota_exceeded: refusal(413, "The project's image_count_total, image_count_uploading, image_size_total or image_stage_total would be exceeded."),
  // web-download: URLs the egress checks refuse at once
  uri_refused: refusal(400, 'The web-download URI is missing, too long, not http(s), carries credentials or uses a refused port or address form.', 'source'),
  address_refused: refusal(400, 'The URI (or a redirect) leads to a loopback, private, link-local, multicast or metadata address.', 'source'),
  // data
  image_too_large: refusal(413, 'The upload is larger than PIR_MAX_IMAGE_SIZE.'),
  size_mismatch: refusal(400, 'x-openstack-image-size does not match the bytes sent.'),
  bad_range: refusal(416, 'The Range header (or, without one, the legacy Content-Range) is malformed or does not fit the image.'),
  multiple_ranges: refusal(400, 'The Range header asks for several ranges; one range per request (as in Glance).'),
  upload_idle: refusal(408, 'No image data arrived for PIR_UPLOAD_IDLE_SECONDS; the upload was abandoned and the image is queued again.'),
  // list
  bad_limit: refusal(400, 'limit is not a non-negative whole number.'),
  bad_sort: refusal(400, 'sort is malformed, or given together with sort_key/sort_dir.'),
  bad_sort_key: refusal(400, 'The sort key is not one PIR sorts by.'),
  bad_sort_dir: refusal(400, 'sort_dir is not asc or desc.'),
  bad_marker: refusal(400, 'marker is not an item of the list the caller asked for (an image, webhook or delivery it can list).'),
  bad_visibility: refusal(400, 'visibility is not public, private, shared, community or all.'),
  bad_member_status: refusal(400, 'member_status is not pending, accepted, rejected or all.'),
  bad_filter: refusal(400, 'A filter value is malformed (a boolean, a number, an ISO 8601 time, in: quoting, a length).'),
  bad_filter_operator: refusal(400, 'A filter uses an operator it does not take (eq/in for names and ids; gt, gte, eq, neq, lt, lte for times).'),
  unsupported_filter: refusal(400, 'A list parameter PIR does not filter on (size, min_disk, changes-since …).'),
  bad_list_parameter: refusal(400, 'A list parameter that takes one value was given more than once.'),
  bad_property_filter: refusal(400, 'A property filter name is empty or longer than 255 characters, or there are more than 128.'),
  // webhooks
  webhook_invalid: refusal(400, "A webhook needs a url and at least one event type (image.active, image.*, …)."),
  webhook_url_refused: refusal(400, "The webhook URL is not https (and not allow-listed), or the egress checks refuse its host, port or address."),
  webhook_all_projects_admin_only: refusal(403, "Only an administrator may subscribe to every project's images (all_projects)."),
  webhook_not_found: refusal(404, "No such webhook in the caller's project."),
  delivery_not_found: refusal(404, "No such delivery of this webhook."),
  webhook_disabled: refusal(409, "The webhook is disabled (see disabled_reason); enable it with PATCH enabled: true first."),
  delivery_pending: refusal(409, "The delivery is still being attempted; redeliver it once it has failed or succeeded."),
  too_many_webhooks: refusal(409, "The project already has 100 webhooks; delete one first."),
  too_many_streams: refusal(429, 'The caller (user and project) has PIR_EVENT_STREAMS_PER_USER (16) GET /v2/events streams open on this API process; close one and connect again.'),
  webhook_ping_too_soon: refusal(429, "The webhook was pinged PIR_WEBHOOK_PINGS_PER_MINUTE times (5) in the last minute; wait the Retry-After seconds."),
  // resumable uploads (tus 1.0, /v2/images/{id}/uploads)
  tus_version_unsupported: refusal(412, 'Tus-Resumable is missing or not 1.0.0.'),
  tus_checksum_algorithm: refusal(400, 'Upload-Checksum names an algorithm PIR does not offer (sha1, sha256, md5).'),
  tus_checksum_mismatch: refusal(460, "The PATCH's bytes do not match its Upload-Checksum; they were discarded."),
  tus_metadata_invalid: refusal(400, 'Upload-Metadata is malformed (a value not base64, a key repeated, empty or with a space, an empty pair) or longer than 4 KiB.'),
  upload_not_found: refusal(404, 'No such resumable upload in progress for the image (finished, terminated or never created; an expired one is 410 upload_expired).'),
  upload_offset_mismatch: refusal(409, 'Upload-Offset is not the number of bytes staged; HEAD the upload and resume from its offset.'),
  upload_length_exceeded: refusal(413, "A PATCH would go past the upload's Upload-Length."),
  upload_locked: refusal(423, 'Another request (perhaps on another API process) is appending to this upload; retry in a moment, after HEAD.'),
  upload_expired: refusal(410, 'The resumable upload expired (PIR_TUS_EXPIRY_SECONDS) and was abandoned: its bytes are gone, start a new upload.'),
  // share links
  share_link_not_found: refusal(404, 'No such share link (unknown, revoked or expired, or its image is no longer active).'),
  too_many_share_links: refusal(409, 'The image already has 100 live share links; revoke one first.'),
  // the cache role (pir cache)
  bad_image_id: refusal(400, 'An image id in the cache API has 1 to 64 letters, digits and dashes.'),
  bad_clear_target: refusal(400, 'x-image-cache-clear-target is "cache" or "queue" (or absent: both).'),
  bad_signature: refusal(401, "A webhook delivery to the cache whose signature or timestamp is not valid."),
  not_cached: refusal(404, 'The image is neither cached nor queued on this cache node, and the upstream does not show it.'),
  image_not_active: refusal(400, 'Only an active image can be queued for caching (`PUT /v2/cache/{id}`).'),
  cache_needs_upstream_token: refusal(400, "The cache node's own admin token has no identity upstream, so it cannot queue an image: use an upstream administrator's token, or set PIR_CACHE_UPSTREAM_TOKEN."),
  upstream_unavailable: fault(503, 'The upstream PIR behind this cache node did not answer in time; retry in a few seconds.'),
  // catalog: search, galleries, revisions
  bad_search: refusal(400, 'q holds no word, more than 16 words or more than 1024 characters, or sort=relevance was asked without q.'),
  bad_gallery: refusal(400, 'A gallery body or parameter is malformed (name, parent_id, recursive).'),
  invalid_gallery: refusal(400, "pir_gallery_id names no gallery of the image's owner."),
  gallery_not_found: refusal(404, 'No such gallery (or not one of the caller\'s project).'),
  gallery_name_taken: refusal(409, 'The parent gallery already holds a gallery of that name.'),
  gallery_not_empty: refusal(409, 'A gallery is deleted only when it holds no image and no gallery.'),
  gallery_cycle: refusal(409, 'A gallery cannot move under itself or one of its own galleries.'),
  gallery_limit: refusal(409, 'The project would have more than 10,000 galleries, or a tree deeper than 32.'),
  bad_revision: refusal(400, 'A revision number or revisions paging parameter is malformed.'),
  revision_not_found: refusal(404, 'No such revision of the image (never written, or older than the retention).'),
  // metadata definitions (/v2/metadefs, README "Metadata definitions")
  bad_metadef: refusal(400, 'A metadefs name or parameter is malformed (empty, over 80 characters, a slash or control character; an unknown sort_key; a pattern that is not a regular expression).'),
  metadef_not_found: refusal(404, 'No such metadata definition namespace, or object, property, tag or resource type association in it (or not visible to the caller).'),
  metadef_protected: refusal(403, 'The namespace is protected: neither it nor anything in it can be deleted until protected is false.'),
  metadef_conflict: refusal(409, 'A namespace, or an object, property, tag or resource type association in the namespace, has that name already.'),
  metadef_limit: refusal(413, 'A namespace would hold more than 1,000 entries of one kind, or more than 2 MiB of definitions.'),
  metadef_contention: expectedFault(503, 'Too many concurrent writers on one namespace; retry.'),
  // registered locations (README "Registering existing bytes")
  location_refused: refusal(400, 'The location is not s3://bucket/key in a bucket the operator allows (never PIR\'s own) nor an http(s) URL, or is malformed or too long.'),
  location_invalid: refusal(400, "The location's metadata or validation_data is malformed (validation_data: md5 checksum, sha512 os_hash_algo/os_hash_value)."),
  locations_hidden: refusal(403, "PATCH add /locations/- is refused while locations are hidden (PIR_SHOW_MULTIPLE_LOCATIONS off, as Glance's show_multiple_locations); use POST /v2/images/{id}/locations."),
  location_immutable: refusal(403, 'A registered location cannot be replaced or removed, and an image has at most one; delete the image and register again.'),
  location_changed: refusal(409, 'The bytes at the location changed (size, ETag or Last-Modified) since registration: PIR does not serve or import other bytes.', 'source'),
  location_unreadable: fault(503, 'The location could not be read (the object is gone, refused, or its server unreachable).', 'source'),
  // PIR's side
  data_unavailable: fault(503, "The image's stored bytes are missing or the wrong size."),
  storage_unavailable: fault(503, 'The image store (the S3 bucket) did not take the bytes; nothing was kept and the image is back in queued; retry.'),
  manifest_contention: expectedFault(503, 'Too many concurrent writers on one image; retry.'),
  change_contention: expectedFault(503, "Another change of the same gallery tree or webhook held it too long (distributed mode: a process froze or died while holding it); retry."),
  insufficient_storage: fault(507, "PIR's disk is full (ENOSPC); the operator must free space in PIR_DATA_DIR."),
  shutting_down: expectedFault(503, 'PIR is shutting down; retry in a moment or on another PIR.'),
  dependency_unavailable: fault(503, 'A service PIR runs on (the MongoDB-wire server, Kafka, Redis or the S3 store) did not answer; retry after the Retry-After seconds.'),
  cache_busy: expectedFault(503, "The cache entry changed twice while being opened (dropped meanwhile); retry."),
  internal_error: fault(500, 'An unexpected error; the logs have it under the request id.'),
} as const satisfies Record<string, ErrorSpec>;

/**
 * Why a pipeline stage ended an image (pir_failure.code, and the 400/500 answer of a waiting
 * upload). Refusals are the image's fault and are never retried; faults were retried first.
 */
export const PIPELINE_ERRORS = {
  checksum_mismatch: refusal(400, "The data's digest differs from one sent with the upload (Content-MD5, Repr-Digest or Content-Digest, header or trailer) or the os_hash_value given at create; the message names which.", 'resend'),
  decompressed_too_large: refusal(400, 'The unpacked disk would exceed PIR_MAX_UNPACKED_SIZE.', 'file'),
  expansion_ratio: refusal(400, 'The data expands more than PIR_MAX_EXPANSION_RATIO (a decompression bomb).', 'file'),
  corrupt_archive: refusal(400, 'A compressed stream or tar archive is corrupt or truncated.', 'file'),
  unsupported_archive: refusal(400, 'The archive uses a feature PIR does not accept.', 'file'),
  unsafe_archive: refusal(400, 'A tar member could be dangerous if extracted (traversal, link, device).', 'file'),
  not_an_ova: refusal(400, 'container_format is ova but the data is not a tar archive.', 'file'),
  invalid_ovf: refusal(400, 'The OVF descriptor is missing, malformed or unusable.', 'file'),
  ovf_disk_missing: refusal(400, 'The disk the OVF names is not in the archive.', 'file'),
  manifest_mismatch: refusal(400, "The OVA manifest's digest of a file does not match it.", 'file'),
  // web-download failures (pir_failure.stage 'import')
  dns_failed: refusal(400, "The URI's host name does not resolve.", 'source'),
  too_many_redirects: refusal(400, 'The URI redirects too many times.', 'source'),
  upstream_status: refusal(400, 'The server behind the URI answered with an error status.', 'source'),
  timeout: refusal(400, 'The server behind the URI stopped sending.', 'source'),
  connection_failed: refusal(400, 'The connection to the server behind the URI failed or broke off.', 'source'),
  download_failed: fault(500, 'The web-download failed for a reason of PIR\'s own.'),
  // glance-download failures (pir_failure.stage 'import'; the image is back in queued; egress codes as for web-download)
  catalog_unavailable: fault(503, "Keystone did not give PIR the caller's service catalog for a glance-download (unreachable, or the caller's token refused)."),
  glance_endpoint_not_found: refusal(400, "The caller's Keystone catalog has no image endpoint for the glance-download's region and interface.", 'source'),
  remote_image_not_found: refusal(400, 'The remote Glance has no image with the glance-download\'s glance_image_id that the caller may see.', 'source'),
  remote_image_not_active: refusal(400, 'The remote image of a glance-download is not active.', 'source'),
  remote_image_unreadable: refusal(400, 'The remote Glance\'s image record is not one PIR can import (not JSON, formats PIR does not take, no size).', 'source'),
  remote_refused: refusal(400, 'The remote Glance refused the caller\'s token (expired, or no right to the image there).', 'source'),
  remote_redirect: refusal(400, 'The remote Glance answered a redirect, which glance-download does not follow (the caller\'s token would go with it).', 'source'),
  remote_size_mismatch: refusal(400, 'The remote image\'s data is not as large as its record says.', 'source'),
  remote_record_too_large: refusal(400, 'The remote Glance\'s image record is larger than 1 MiB (a record is a few kilobytes).', 'source'),
  remote_record_timeout: refusal(400, 'The remote Glance did not send its image record within 60 s.', 'source'),
  // location registrations (pir_failure.stage 'import'; egress codes as for web-download)
  location_no_ranges: refusal(400, 'The HTTP server behind the location ignores range requests, which PIR reads registered bytes by.', 'source'),
  location_too_small: refusal(400, 'The object at the location is smaller than a disk image can be (512 bytes).', 'source'),
  location_validation_failed: refusal(400, "The location's bytes do not have the md5 or sha512 its validation_data gave.", 'source'),
  location_not_a_disk: refusal(400, 'The bytes at the location are compressed or an archive: PIR would have to copy the unpacked disk.', 'file'),
  staging_missing: fault(500, 'The staged upload disappeared before unpack.'),
  unpacked_missing: fault(500, 'The unpacked disk disappeared between stages.'),
  staged_data_lost: fault(500, 'The disk to promote disappeared.'),
  store_copy_failed: fault(503, 'Writing the image into one of its target stores failed (all_stores_must_succeed), or into every one.'),
  store_copy_mismatch: fault(500, "A copy into a store did not read back the image's size and os_hash_value; it was removed."),
  deadline_exceeded: fault(500, 'The import stopped making progress and was resumed without success.'),
  import_interrupted: fault(503, "A download was cut off by a restart, a stop or a stall of PIR: a legacy import task's (POST /v2/tasks; create the task again) or an import call's web-download or glance-download (import again)."),
  store_unreachable: fault(503, 'The image store did not answer while a stage worked on the image, for as long as an import waits for it (PIR_STAGE_DEADLINE_SECONDS).'),
} as const satisfies Record<string, ErrorSpec>;

/**
 * The disk-format inspectors' refusals (formats/codes.ts declares and documents them): 415, as
 * Glance answers an upload its format inspection refuses (InvalidImageData, glance/api/v2/image_data.py).
 */
const FORMAT_ERRORS: Record<string, ErrorSpec> = Object.fromEntries(
  Object.entries({ ...FINDING_CODES, ...VERDICT_CODES }).map(([code, meaning]) => [code, refusal(415, meaning, 'file')]),
);

export type ErrorCode = keyof typeof API_ERRORS | keyof typeof PIPELINE_ERRORS;

export const ERROR_CATALOG: Readonly<Record<string, ErrorSpec>> = Object.freeze({ ...FORMAT_ERRORS, ...PIPELINE_ERRORS, ...API_ERRORS });

/** The catalog entry of `code`, or undefined for a code nobody declared (a bug the catalog test catches). */
export function errorSpec(code: string): ErrorSpec | undefined {
  return Object.hasOwn(ERROR_CATALOG, code) ? ERROR_CATALOG[code] : undefined;
}

const KIND_OF_STATUS: Record<number, ErrorKind> = {
  400: 'bad_request', 401: 'unauthorized', 403: 'forbidden', 404: 'not_found', 405: 'bad_request', 408: 'timeout', 409: 'conflict', 410: 'gone', 412: 'bad_request',
  413: 'too_large', 414: 'bad_request', 415: 'unsupported_media_type', 416: 'bad_request', 460: 'bad_request', 500: 'internal', 503: 'unavailable',
};

/** A domain error whose status and class come from the catalog. */
export function fail(code: ErrorCode, message: string): PirError {
  const spec = ERROR_CATALOG[code];
  return new PirError(KIND_OF_STATUS[spec.status] ?? 'internal', code, message, spec.status === 503);
}
