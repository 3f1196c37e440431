/**
 * The JSON schemas of the metadata definitions catalog, published at /v2/schemas/metadefs/*.
 * Shaped exactly as Glance renders them (glance/api/v2/metadef_*.py through glance/schema.py):
 * python-glanceclient builds warlock models from them and validates both what the user types and
 * PIR's responses, and openstacksdk relies on the same field names. Plain objects rather than
 * TypeBox, because several parts (null inside a string enum, `name` inside nested item schemas,
 * top-level `definitions` pulled out of the item schema) are Glance's rendering, not JSON Schema
 * as TypeBox writes it. The descriptions are ours; names, types, limits and `required` are Glance's.
 *
 * Rendering rules reproduced from glance/schema.py:
 * - a single-item schema is `{name, properties, additionalProperties: false, definitions?, required?}`;
 * - a collection wraps the item schema (minus its `definitions`, which move to the top level) in
 *   `{name, properties: {<name>: array|dict, first, next, schema}, links, definitions?}`, with no
 *   top-level `additionalProperties`.
 */

/** Name lengths are the database columns' (String(80)); Glance's api-ref samples still show 255, its code says 80. */
const NAME_LENGTH = 80;

/** `type` values a property (or an array property's items) may declare. Glance lists null inside a `type: string` enum. */
const PROPERTY_TYPES = ['array', 'boolean', 'integer', 'number', 'object', 'string', null];

const readOnlyString = () => ({ type: 'string', readOnly: true });
const timestamp = (description: string) => ({ type: 'string', readOnly: true, description, format: 'date-time' });

/** Definitions shared by the property-definition keywords. */
const positiveIntegerDefinitions = () => ({
  positiveInteger: { type: 'integer', minimum: 0 },
  positiveIntegerDefault0: { allOf: [{ $ref: '#/definitions/positiveInteger' }, { default: 0 }] },
});

/** The keywords one property definition may carry (Glance's PropertyType), as plain JSON Schema fragments. */
const propertyDefinitionProperties = () => ({
  name: { type: 'string', maxLength: NAME_LENGTH },
  title: { type: 'string' },
  description: { type: 'string' },
  operators: { type: 'array', items: { type: 'string' } },
  type: { type: 'string', enum: [...PROPERTY_TYPES] },
  required: { $ref: '#/definitions/stringArray' },
  minimum: { type: 'number' },
  maximum: { type: 'number' },
  maxLength: { $ref: '#/definitions/positiveInteger' },
  minLength: { $ref: '#/definitions/positiveIntegerDefault0' },
  pattern: { type: 'string', format: 'regex' },
  enum: { type: 'array' },
  readonly: { type: 'boolean' },
  default: {},
  items: {
    type: 'object',
    properties: {
      type: { type: 'string', enum: [...PROPERTY_TYPES] },
      enum: { type: 'array' },
    },
  },
  maxItems: { $ref: '#/definitions/positiveInteger' },
  minItems: { $ref: '#/definitions/positiveIntegerDefault0' },
  uniqueItems: { type: 'boolean', default: false },
  additionalItems: { type: 'boolean' },
});

/**
 * Definitions of the namespace and object schemas. Here `stringArray` has no minItems (Glance
 * comments it out), so an object may send `required: []`; the property schema's own copy below
 * keeps minItems 1. `property` is a map of property name to definition, whose `required` is
 * ['title', 'type'] in that order.
 */
const namespaceDefinitions = () => ({
  ...positiveIntegerDefinitions(),
  stringArray: { type: 'array', items: { type: 'string' }, uniqueItems: true },
  property: {
    type: 'object',
    additionalProperties: {
      type: 'object',
      required: ['title', 'type'],
      properties: propertyDefinitionProperties(),
    },
  },
});

/** Definitions of the property schemas: no `property` map, and `stringArray` needs at least one item. */
const propertyDefinitions = () => ({
  ...positiveIntegerDefinitions(),
  stringArray: { type: 'array', items: { type: 'string' }, minItems: 1, uniqueItems: true },
});

/** CollectionSchema: an array of items under the collection's name, plus the paging links. */
const collection = (name: string, item: Record<string, unknown>, container: 'array' | 'dict') => {
  const { definitions, ...itemWithoutDefinitions } = item;
  return {
    name,
    properties: {
      [name]: container === 'array'
        ? { type: 'array', items: itemWithoutDefinitions }
        : { type: 'object', additionalProperties: itemWithoutDefinitions },
      first: { type: 'string' },
      next: { type: 'string' },
      schema: { type: 'string' },
    },
    links: [
      { rel: 'first', href: '{first}' },
      { rel: 'next', href: '{next}' },
      { rel: 'describedby', href: '{schema}' },
    ],
    ...(definitions === undefined ? {} : { definitions }),
  };
};

export const metadefNamespaceSchema = {
  name: 'namespace',
  properties: {
    namespace: { type: 'string', description: 'Identifier of the namespace, unique across the catalog.', maxLength: NAME_LENGTH },
    display_name: { type: 'string', description: 'Human-readable name of the namespace, shown by user interfaces that have one.', maxLength: NAME_LENGTH },
    description: { type: 'string', description: 'Human-readable account of what the namespace defines.', maxLength: 500 },
    visibility: { type: 'string', description: 'Who may see the namespace.', enum: ['public', 'private'] },
    protected: { type: 'boolean', description: 'When true, the namespace cannot be deleted.' },
    owner: { type: 'string', description: 'Project that owns the namespace.', maxLength: 255 },
    created_at: timestamp('When the namespace was created'),
    updated_at: timestamp('When the namespace was last changed'),
    schema: readOnlyString(),
    self: readOnlyString(),
    resource_type_associations: {
      type: 'array',
      items: {
        type: 'object',
        properties: { name: { type: 'string' }, prefix: { type: 'string' }, properties_target: { type: 'string' } },
      },
    },
    properties: { $ref: '#/definitions/property' },
    objects: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          name: { type: 'string' },
          description: { type: 'string' },
          required: { $ref: '#/definitions/stringArray' },
          properties: { $ref: '#/definitions/property' },
        },
      },
    },
    tags: {
      type: 'array',
      items: { type: 'object', properties: { name: { type: 'string' } } },
    },
  },
  additionalProperties: false,
  definitions: namespaceDefinitions(),
  required: ['namespace'],
};

export const metadefNamespacesSchema = collection('namespaces', metadefNamespaceSchema, 'array');

/** Glance names this schema (and its collection) after the association, though it is served as resource_type(s). */
export const metadefResourceTypeSchema = {
  name: 'resource_type_association',
  properties: {
    name: {
      type: 'string',
      description: 'Name of the resource type; where one exists, use the matching Heat resource type name (such as OS::Glance::Image or OS::Nova::Flavor).',
      maxLength: NAME_LENGTH,
    },
    prefix: {
      type: 'string',
      description: "Prefix, separator included (usually a trailing colon), that the namespace's properties take when they are applied to this resource type.",
      maxLength: NAME_LENGTH,
    },
    properties_target: {
      type: 'string',
      description: "For resource types that hold more than one set of key/value metadata (a Cinder volume has both user and image metadata), which set the namespace's properties belong to.",
      maxLength: NAME_LENGTH,
    },
    created_at: timestamp('When the namespace was associated with this resource type'),
    updated_at: timestamp('When this resource type association was last changed'),
  },
  additionalProperties: false,
  required: ['name'],
};

export const metadefResourceTypesSchema = collection('resource_type_associations', metadefResourceTypeSchema, 'array');

/** One property definition, as created or shown on its own: `name` is required here (appended after PropertyType's own). */
export const metadefPropertySchema = {
  name: 'property',
  properties: propertyDefinitionProperties(),
  additionalProperties: false,
  definitions: propertyDefinitions(),
  required: ['type', 'title', 'name'],
};

/** A namespace's properties: a map keyed by property name, so the items do not require `name`. */
export const metadefPropertiesSchema = collection('properties', { ...metadefPropertySchema, required: ['type', 'title'] }, 'dict');

export const metadefObjectSchema = {
  name: 'object',
  properties: {
    name: { type: 'string', maxLength: NAME_LENGTH },
    description: { type: 'string' },
    required: { $ref: '#/definitions/stringArray' },
    properties: { $ref: '#/definitions/property' },
    schema: readOnlyString(),
    self: readOnlyString(),
    created_at: timestamp('When the object was created'),
    updated_at: timestamp('When the object was last changed'),
  },
  additionalProperties: false,
  definitions: namespaceDefinitions(),
  required: ['name'],
};

export const metadefObjectsSchema = collection('objects', metadefObjectSchema, 'array');

export const metadefTagSchema = {
  name: 'tag',
  properties: {
    name: { type: 'string', maxLength: NAME_LENGTH },
    created_at: timestamp('When the tag was created'),
    updated_at: timestamp('When the tag was last changed'),
  },
  additionalProperties: false,
  required: ['name'],
};

export const metadefTagsSchema = collection('tags', metadefTagSchema, 'array');

/** Keyed by the path after /v2/schemas/metadefs/. */
export const METADEF_SCHEMAS: Record<string, object> = {
  namespace: metadefNamespaceSchema,
  namespaces: metadefNamespacesSchema,
  resource_type: metadefResourceTypeSchema,
  resource_types: metadefResourceTypesSchema,
  property: metadefPropertySchema,
  properties: metadefPropertiesSchema,
  object: metadefObjectSchema,
  objects: metadefObjectsSchema,
  tag: metadefTagSchema,
  tags: metadefTagsSchema,
};
