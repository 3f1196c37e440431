/**
 * The JSON schemas Glance's clients read (/v2/schemas/*): generated from the TypeBox shapes in
 * api/image-schema.ts, and the metadata definitions' (metadefs/*) from api/metadef-schema.ts.
 */
import type { FastifyInstance } from 'fastify';
import { shareLinkSchema, shareLinksSchema } from './share-links.js';
import { imageSchema, imagesSchema, memberSchema, membersSchema, taskSchema, tasksSchema } from '../image-schema.js';
import { METADEF_SCHEMAS } from '../metadef-schema.js';
import { galleriesSchema, galleryMemberSchema, galleryMembersSchema, gallerySchema, metafileSchema, revisionSchema, revisionsSchema } from '../catalog-schema.js';

/** Serialized once: the schemas never change while PIR runs. */
const PUBLISHED: Record<string, string> = Object.fromEntries(Object.entries({
  image: imageSchema, images: imagesSchema, member: memberSchema, members: membersSchema, task: taskSchema, tasks: tasksSchema,
  'share-link': shareLinkSchema, 'share-links': shareLinksSchema,
  gallery: gallerySchema, galleries: galleriesSchema, 'gallery-member': galleryMemberSchema, 'gallery-members': galleryMembersSchema, revision: revisionSchema, revisions: revisionsSchema, metafile: metafileSchema,
  ...Object.fromEntries(Object.entries(METADEF_SCHEMAS).map(([name, schema]) => [`metadefs/${name}`, schema])),
}).map(([name, schema]) => [name, JSON.stringify(schema)]));

/**
 * Glance's `stores` attribute, listed with multi-store only: python-glanceclient needs it known
 * to pass `image-create-via-import --stores` (and clashes with it in the option parser when
 * its cached schema has it: README "Stores").
 */
const STORES_PROPERTY = { type: 'string', readOnly: true, description: 'Store in which image data resides. Only present when the operator has enabled multiple stores. May be a comma-separated list of store identifiers.' };

export async function schemaRoutes(app: FastifyInstance, options: { multiStore?: boolean } = {}): Promise<void> {
  const published = { ...PUBLISHED };
  if (options.multiStore) {
    published.image = JSON.stringify({ ...imageSchema, properties: { ...(imageSchema as unknown as { properties: Record<string, unknown> }).properties, stores: STORES_PROPERTY } });
  }
  for (const [name, body] of Object.entries(published)) {
    app.get(`/v2/schemas/${name}`, async (_request, reply) => reply.type('application/json').send(body));
  }
}
