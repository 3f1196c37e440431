/** JSON schemas of the catalog extension, published at /v2/schemas/{gallery,galleries,revision,revisions,metafile}. */
const nullableString = { type: ['null', 'string'] };

export const gallerySchema = {
  name: 'gallery',
  type: 'object',
  properties: {
    id: { type: 'string', readOnly: true, description: 'PIR: the gallery id (images join it with PATCH pir_gallery_id)' },
    name: { type: 'string', minLength: 1, maxLength: 255, pattern: '^[^/]+$', description: 'PIR: the name, unique among its siblings' },
    parent_id: { ...nullableString, description: 'PIR: the parent gallery, or null at the root' },
    path: { type: 'string', readOnly: true, description: 'PIR: names from the root, e.g. linux/debian/12' },
    owner: { type: 'string', readOnly: true },
    image_count: { type: 'integer', readOnly: true, description: 'PIR: images the caller may list in it (recursive=true: and below it)' },
    gallery_count: { type: 'integer', readOnly: true },
    created_at: { type: 'string', readOnly: true },
    updated_at: { type: 'string', readOnly: true },
  },
  additionalProperties: false,
};

export const galleriesSchema = { name: 'galleries', type: 'object', properties: { galleries: { type: 'array', items: gallerySchema } } };

export const revisionSchema = {
  name: 'revision',
  type: 'object',
  properties: {
    n: { type: 'integer', minimum: 1 },
    at: { type: 'string' },
    project_id: { type: 'string' },
    user_id: { type: 'string' },
    action: { type: 'string', description: 'create, update, tags, members, gallery, restore:<n>' },
    patch: { type: 'array', description: 'RFC 6902 JSON Patch from the previous revision', items: { type: 'object' } },
    metadata: { type: 'object', description: 'The whole metadata after this revision (GET …/revisions/{n} only)' },
    self: { type: 'string' },
  },
};

export const revisionsSchema = { name: 'revisions', type: 'object', properties: { revisions: { type: 'array', items: revisionSchema }, next: { type: 'string' } } };

export const metafileSchema = {
  name: 'metafile',
  type: 'object',
  properties: {
    name: nullableString,
    disk_format: nullableString,
    container_format: nullableString,
    visibility: { type: 'string' },
    protected: { type: 'boolean' },
    min_disk: { type: 'integer' },
    min_ram: { type: 'integer' },
    tags: { type: 'array', items: { type: 'string' } },
    properties: { type: 'object', additionalProperties: { type: 'string' } },
    gallery: { ...nullableString, description: "The gallery's path in the owner's tree" },
    revision: { type: ['null', 'integer'], description: "The image's newest revision: this metafile's version" },
  },
};
