/**
 * Glance's metadata definitions API (/v2/metadefs). Bodies are validated against the schemas
 * PIR publishes at /v2/schemas/metadefs/* (api/metadef-schema.ts, served by ./schemas.ts), as Glance
 * validates against its own; every decision is in core/metadefs.ts.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { fail } from '../../core/error-catalog.js';
import type { MetadefNamespace, MetadefObject, MetadefPropertyDef, MetadefTag, ResourceTypeAssociation } from '../../core/metadef-ports.js';
import {
  METADEF_DEFAULT_LIMIT, METADEF_MAX_LIMIT, METADEF_READ_ONLY, refuseReadOnly, withPrefix,
  type ListQuery, type MetadefService, type NamespaceInput, type NamespaceListQuery, type ObjectInput,
} from '../../core/metadefs.js';
import { stripMillis } from '../glance-view.js';
import { pythonInt } from '../python-int.js';
import { METADEF_SCHEMAS } from '../metadef-schema.js';

const BASE = '/v2/metadefs/namespaces';
const enc = encodeURIComponent;
const nsHref = (name: string) => `${BASE}/${enc(name)}`;

/**
 * A published schema as a request validator: without Glance's annotations that are not JSON
 * Schema keywords (a schema's `name`, its `links`), which Fastify's strict Ajv refuses, and
 * without `default`s, which Ajv would write into the body (Glance stores what was sent).
 */
function validator(schema: object): object {
  const MAPS = new Set(['properties', 'definitions', 'patternProperties']);
  const strip = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(strip);
    if (node === null || typeof node !== 'object') return node;
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(node)) {
      if ((key === 'name' && typeof value === 'string') || (key === 'links' && Array.isArray(value)) || key === 'default') continue;
      // In a map of named schemas the keys are names (a property may be called "default"), each value a schema.
      out[key] = MAPS.has(key) && value !== null && typeof value === 'object' && !Array.isArray(value)
        ? Object.fromEntries(Object.entries(value).map(([name, sub]) => [name, strip(sub)]))
        : strip(value);
    }
    return out;
  };
  // Glance's schemas leave the body's own type unsaid; a body that is not an object is refused here.
  return { ...(strip(schema) as object), type: 'object' };
}

/** Route options: the read-only attributes are refused (403) before the body is validated (400), as Glance does. */
function body(schema: object, readOnly: string[]) {
  return {
    schema: { body: schema },
    preValidation: async (request: FastifyRequest) => {
      if (request.body !== null && typeof request.body === 'object' && !Array.isArray(request.body)) refuseReadOnly(request.body, readOnly);
    },
  };
}

const BODY = {
  namespace: body(validator(METADEF_SCHEMAS.namespace!), METADEF_READ_ONLY.namespace),
  resource_type: body(validator(METADEF_SCHEMAS.resource_type!), METADEF_READ_ONLY.entry),
  property: body(validator(METADEF_SCHEMAS.property!), METADEF_READ_ONLY.entry),
  object: body(validator(METADEF_SCHEMAS.object!), METADEF_READ_ONLY.entry),
};

const TAGS_BODY = {
  type: 'object',
  required: ['tags'],
  properties: { tags: { type: 'array', maxItems: 1000, items: { type: 'object', required: ['name'], properties: { name: { type: 'string', maxLength: 255 } } } } },
} as const;
const TAG_BODY = body({ type: 'object', required: ['name'], properties: { name: { type: 'string', maxLength: 255 } } }, METADEF_READ_ONLY.entry);

function associationView(a: ResourceTypeAssociation): Record<string, unknown> {
  return { name: a.name, ...(a.prefix !== undefined ? { prefix: a.prefix } : {}), ...(a.properties_target !== undefined ? { properties_target: a.properties_target } : {}), created_at: stripMillis(a.created_at), updated_at: stripMillis(a.updated_at) };
}

function objectView(namespace: string, o: MetadefObject): Record<string, unknown> {
  return {
    name: o.name,
    ...(o.description !== undefined ? { description: o.description } : {}),
    ...(o.required !== undefined ? { required: o.required } : {}),
    properties: o.properties ?? {},
    created_at: stripMillis(o.created_at),
    updated_at: stripMillis(o.updated_at),
    self: `${nsHref(namespace)}/objects/${enc(o.name)}`,
    schema: '/v2/schemas/metadefs/object',
  };
}

const propertyView = (name: string, def: MetadefPropertyDef) => ({ name, ...def });
const tagView = (t: MetadefTag) => ({ name: t.name, created_at: stripMillis(t.created_at), updated_at: stripMillis(t.updated_at) });

/** A namespace as Glance shows it: the list shows its associations; the detail also what it holds. */
function namespaceView(ns: MetadefNamespace, detail: boolean): Record<string, unknown> {
  const view: Record<string, unknown> = {
    namespace: ns.namespace,
    ...(ns.display_name !== undefined ? { display_name: ns.display_name } : {}),
    ...(ns.description !== undefined ? { description: ns.description } : {}),
    visibility: ns.visibility,
    protected: ns.protected,
    owner: ns.owner,
    created_at: stripMillis(ns.created_at),
    updated_at: stripMillis(ns.updated_at),
    self: nsHref(ns.namespace),
    schema: '/v2/schemas/metadefs/namespace',
  };
  if (ns.resource_type_associations.length > 0) view.resource_type_associations = ns.resource_type_associations.map(associationView);
  if (!detail) return view;
  if (Object.keys(ns.properties).length > 0) view.properties = ns.properties;
  if (ns.objects.length > 0) view.objects = ns.objects.map((o) => objectView(ns.namespace, o));
  if (ns.tags.length > 0) view.tags = ns.tags.map((t) => ({ name: t.name }));
  return view;
}

type Query = Record<string, unknown>;

function text(q: Query, key: string): string | undefined {
  const v = q[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length > 1024) throw fail('bad_metadef', `${key} must be given once, as text of at most 1024 characters.`);
  return v;
}

/** limit, marker, sort_key, sort_dir as Glance reads them (limit: default 25, at most 1000). */
function listQuery(q: Query): ListQuery {
  const limitText = text(q, 'limit');
  let limit = METADEF_DEFAULT_LIMIT;
  if (limitText !== undefined) {
    // Glance: int(limit), so '+5' is 5.
    const asked = pythonInt(limitText);
    if (asked === null || asked < 0) throw fail('bad_metadef', 'limit must be a whole number, 0 or more.');
    limit = Math.min(METADEF_MAX_LIMIT, asked);
  }
  const sortDir = text(q, 'sort_dir') ?? 'desc';
  if (sortDir !== 'asc' && sortDir !== 'desc') throw fail('bad_metadef', `Invalid sort direction: ${sortDir} (asc or desc).`);
  const marker = text(q, 'marker');
  return { limit, sort_key: text(q, 'sort_key') ?? 'created_at', sort_dir: sortDir, ...(marker !== undefined ? { marker } : {}) };
}

function namespaceListQuery(q: Query): NamespaceListQuery {
  const visibility = text(q, 'visibility');
  if (visibility !== undefined && visibility !== 'public' && visibility !== 'private') throw fail('bad_metadef', `Invalid visibility value: ${visibility} (public or private).`);
  const types = text(q, 'resource_types');
  return {
    ...listQuery(q),
    ...(visibility ? { visibility } : {}),
    ...(types ? { resource_types: types.split(',').map((t) => t.trim()).filter((t) => t.length > 0) } : {}),
  };
}

/** `first`/`next` keep the query (without its marker), as Glance's do. */
function listLink(q: Query, marker?: string): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (k !== 'marker' && typeof v === 'string') params.append(k, v);
  if (marker !== undefined) params.append('marker', marker);
  const s = params.toString();
  return s ? `${BASE}?${s}` : BASE;
}

const query = (request: FastifyRequest) => (request.query ?? {}) as Query;
const ns = (request: FastifyRequest) => (request.params as { namespace: string }).namespace;
const param = (request: FastifyRequest, key: string) => (request.params as Record<string, string>)[key]!;

export async function metadefRoutes(app: FastifyInstance, metadefs: MetadefService): Promise<void> {
  // namespaces
  app.get(BASE, async (request) => {
    const q = query(request);
    const { namespaces, next } = await metadefs.listNamespaces(request.caller, namespaceListQuery(q));
    return {
      namespaces: namespaces.map((n) => namespaceView(n, false)),
      first: listLink(q),
      schema: '/v2/schemas/metadefs/namespaces',
      ...(next !== undefined ? { next: listLink(q, next) } : {}),
    };
  });
  app.post(BASE, BODY.namespace, async (request, reply) => {
    const created = await metadefs.createNamespace(request.caller, request.body as NamespaceInput);
    reply.header('Location', nsHref(created.namespace));
    return reply.code(201).send(namespaceView(created, true));
  });
  app.get(`${BASE}/:namespace`, async (request) => {
    const resourceType = text(query(request), 'resource_type');
    return namespaceView(withPrefix(await metadefs.getNamespace(request.caller, ns(request)), resourceType), true);
  });
  app.put(`${BASE}/:namespace`, BODY.namespace, async (request) => {
    return namespaceView(await metadefs.updateNamespace(request.caller, ns(request), request.body as NamespaceInput), false);
  });
  app.delete(`${BASE}/:namespace`, async (request, reply) => {
    await metadefs.deleteNamespace(request.caller, ns(request));
    return reply.code(204).send();
  });

  // resource types and associations
  app.get('/v2/metadefs/resource_types', async (request) => ({
    resource_types: (await metadefs.resourceTypes(request.caller)).map((rt) => ({ name: rt.name, created_at: stripMillis(rt.created_at), updated_at: stripMillis(rt.updated_at) })),
  }));
  app.get(`${BASE}/:namespace/resource_types`, async (request) => ({
    resource_type_associations: (await metadefs.associations(request.caller, ns(request))).map(associationView),
  }));
  app.post(`${BASE}/:namespace/resource_types`, BODY.resource_type, async (request, reply) => {
    const made = await metadefs.associate(request.caller, ns(request), request.body as { name: string; prefix?: string; properties_target?: string });
    return reply.code(201).send(associationView(made));
  });
  app.delete(`${BASE}/:namespace/resource_types/:resource_type`, async (request, reply) => {
    await metadefs.dissociate(request.caller, ns(request), param(request, 'resource_type'));
    return reply.code(204).send();
  });

  // properties
  app.get(`${BASE}/:namespace/properties`, async (request) => ({ properties: await metadefs.properties(request.caller, ns(request)) }));
  app.post(`${BASE}/:namespace/properties`, BODY.property, async (request, reply) => {
    const made = await metadefs.addProperty(request.caller, ns(request), request.body as Record<string, unknown> & { name: string });
    return reply.code(201).send(propertyView(made.name, made.def));
  });
  app.get(`${BASE}/:namespace/properties/:property`, async (request) => {
    const resourceType = text(query(request), 'resource_type');
    const found = await metadefs.property(request.caller, ns(request), param(request, 'property'), resourceType);
    return propertyView(found.name, found.def);
  });
  app.put(`${BASE}/:namespace/properties/:property`, BODY.property, async (request) => {
    const made = await metadefs.updateProperty(request.caller, ns(request), param(request, 'property'), request.body as Record<string, unknown> & { name: string });
    return propertyView(made.name, made.def);
  });
  app.delete(`${BASE}/:namespace/properties/:property`, async (request, reply) => {
    await metadefs.removeProperty(request.caller, ns(request), param(request, 'property'));
    return reply.code(204).send();
  });
  app.delete(`${BASE}/:namespace/properties`, async (request, reply) => {
    await metadefs.clear(request.caller, ns(request), 'properties');
    return reply.code(204).send();
  });

  // objects
  app.get(`${BASE}/:namespace/objects`, async (request) => {
    const name = ns(request);
    const list = await metadefs.objects(request.caller, name, listQuery(query(request)));
    return { objects: list.map((o) => objectView(name, o)), schema: '/v2/schemas/metadefs/objects' };
  });
  app.post(`${BASE}/:namespace/objects`, BODY.object, async (request, reply) => {
    const made = await metadefs.addObject(request.caller, ns(request), request.body as ObjectInput);
    return reply.code(201).send(objectView(ns(request), made));
  });
  app.get(`${BASE}/:namespace/objects/:object`, async (request) => objectView(ns(request), await metadefs.object(request.caller, ns(request), param(request, 'object'))));
  app.put(`${BASE}/:namespace/objects/:object`, BODY.object, async (request) => {
    return objectView(ns(request), await metadefs.updateObject(request.caller, ns(request), param(request, 'object'), request.body as ObjectInput));
  });
  app.delete(`${BASE}/:namespace/objects/:object`, async (request, reply) => {
    await metadefs.removeObject(request.caller, ns(request), param(request, 'object'));
    return reply.code(204).send();
  });
  app.delete(`${BASE}/:namespace/objects`, async (request, reply) => {
    await metadefs.clear(request.caller, ns(request), 'objects');
    return reply.code(204).send();
  });

  // tags
  app.get(`${BASE}/:namespace/tags`, async (request) => ({
    tags: (await metadefs.tags(request.caller, ns(request), listQuery(query(request)))).map(tagView),
  }));
  app.post(`${BASE}/:namespace/tags`, { schema: { body: TAGS_BODY } }, async (request, reply) => {
    const append = /^(1|t|true|on|y|yes)$/i.test(String(request.headers['x-openstack-append'] ?? ''));
    const names = (request.body as { tags: { name: string }[] }).tags.map((t) => t.name);
    const made = await metadefs.addTags(request.caller, ns(request), names, append);
    return reply.code(201).send({ tags: made.map((t) => ({ name: t.name })) });
  });
  app.post(`${BASE}/:namespace/tags/:tag`, async (request, reply) => {
    return reply.code(201).send(tagView(await metadefs.addTag(request.caller, ns(request), param(request, 'tag'))));
  });
  app.get(`${BASE}/:namespace/tags/:tag`, async (request) => tagView(await metadefs.tagNamed(request.caller, ns(request), param(request, 'tag'))));
  app.put(`${BASE}/:namespace/tags/:tag`, TAG_BODY, async (request) => {
    return tagView(await metadefs.renameTag(request.caller, ns(request), param(request, 'tag'), request.body as { name: string }));
  });
  app.delete(`${BASE}/:namespace/tags/:tag`, async (request, reply) => {
    await metadefs.removeTag(request.caller, ns(request), param(request, 'tag'));
    return reply.code(204).send();
  });
  app.delete(`${BASE}/:namespace/tags`, async (request, reply) => {
    await metadefs.clear(request.caller, ns(request), 'tags');
    return reply.code(204).send();
  });
}
