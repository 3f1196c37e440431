/**
 * Request and response shapes, declared once with TypeBox: they validate request bodies
 * (Fastify's ajv) and are published at /v2/schemas/* (Glance's clients build their options and
 * validate responses from them, so every field PIR shows is declared with its type).
 * No `stores` property: it clashes with the glance CLI's own --stores option.
 */
import { Type, type TSchema } from '@sinclair/typebox';
import { CONTAINER_FORMATS, DISK_FORMATS, IMAGE_STATUSES, MEMBER_STATUSES, VISIBILITIES } from '../schemas/image.js';
import { LIMITS } from '../core/limits.js';
import { commonPropertiesSchema } from '../core/common-properties.js';

const UUID_PATTERN = '^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$';

/** `type: ['null', T]`, as Glance writes nullable fields (glanceclient reads `type` to build CLI options). */
const Nullable = (schema: Record<string, unknown>) => Type.Unsafe<unknown>({ ...schema, type: ['null', schema.type] });
const ReadOnly = <T extends TSchema>(schema: T) => ({ ...schema, readOnly: true }) as T;
const Enum = (values: readonly string[], description: string) => Type.Unsafe<string>({ type: 'string', enum: [...values], description });
const NullableEnum = (values: readonly string[], description: string) => Type.Unsafe<string | null>({ type: ['null', 'string'], enum: [null, ...values], description });

/** Base attributes a client may set (at create, and with PATCH). */
const writable = {
  name: Nullable({ type: 'string', maxLength: LIMITS.nameLength, description: 'Descriptive name for the image' }),
  visibility: Enum(VISIBILITIES, 'Scope of image accessibility'),
  protected: Type.Boolean({ description: 'If true, image will not be deletable.' }),
  os_hidden: Type.Boolean({ description: 'If true, image will not appear in default image list response.' }),
  owner: Nullable({ type: 'string', maxLength: LIMITS.memberIdLength, description: 'Owner of the image' }),
  container_format: NullableEnum(CONTAINER_FORMATS, 'Format of the container'),
  disk_format: NullableEnum(DISK_FORMATS, 'Format of the disk'),
  tags: Type.Array(Type.String({ minLength: 1, maxLength: LIMITS.tagLength }), { maxItems: LIMITS.imageTags, description: 'List of strings related to the image' }),
  min_ram: Type.Integer({ minimum: 0, maximum: LIMITS.minDiskOrRam, description: 'Amount of ram (in MB) required to boot image.' }),
  min_disk: Type.Integer({ minimum: 0, maximum: LIMITS.minDiskOrRam, description: 'Amount of disk space (in GB) required to boot image.' }),
};

const extraProperty = Type.String({ maxLength: LIMITS.propertyValueLength });

/** POST /v2/images. Read-only and reserved names are refused with 403 before this runs (as Glance). */
export const CreateImageBody = Type.Object({
  id: Type.String({ pattern: UUID_PATTERN, description: 'An identifier for the image' }),
  ...writable,
  os_hash_algo: Type.Unsafe<string>({ type: 'string', enum: ['sha512'] }),
  os_hash_value: Type.String({ pattern: '^[0-9a-fA-F]{128}$' }),
}, { additionalProperties: extraProperty, maxProperties: LIMITS.imageProperties + 16 });
delete (CreateImageBody as { required?: string[] }).required; // every field is optional at create

export const imageSchema = {
  name: 'image',
  ...Type.Object({
    id: Type.String({ pattern: UUID_PATTERN, description: 'An identifier for the image' }),
    ...writable,
    status: ReadOnly(Enum(IMAGE_STATUSES, 'Status of the image')),
    checksum: ReadOnly(Nullable({ type: 'string', maxLength: 32, description: 'md5 hash of image contents.' })),
    os_hash_algo: ReadOnly(Nullable({ type: 'string', maxLength: 64, description: 'Algorithm to calculate the os_hash_value' })),
    os_hash_value: ReadOnly(Nullable({ type: 'string', maxLength: 128, description: 'Hexdigest of the image contents using the algorithm specified by os_hash_algo' })),
    size: ReadOnly(Nullable({ type: 'integer', description: 'Size of image file in bytes' })),
    virtual_size: ReadOnly(Nullable({ type: 'integer', description: 'Virtual size of image in bytes' })),
    created_at: ReadOnly(Type.String({ description: 'Date and time of image registration' })),
    updated_at: ReadOnly(Type.String({ description: 'Date and time of the last image modification' })),
    direct_url: ReadOnly(Type.String({ description: 'URL to access the image file kept in external store' })),
    // Shown only to the owner or an admin, and only when the operator enables it (README "Registering existing bytes").
    locations: Type.Array(Type.Object({
      url: Type.String({ maxLength: 4096 }),
      metadata: Type.Object({}),
      validation_data: Type.Optional(Type.Object({})),
    }, { additionalProperties: false }), { description: 'A set of URLs to access the image file kept in external store' }),
    self: ReadOnly(Type.String({ description: 'An image self url' })),
    file: ReadOnly(Type.String({ description: 'An image file url' })),
    schema: ReadOnly(Type.String({ description: 'An image schema url' })),
    pir_stage: ReadOnly(Nullable({ type: 'string', description: 'PIR: the pipeline stage an importing image is in' })),
    pir_pipeline: ReadOnly(Nullable({ type: 'object', description: 'PIR: the import pipeline run, with per-stage status and timings' })),
    pir_failure: ReadOnly(Nullable({ type: 'object', description: 'PIR: why the image was killed: stage, code and message' })),
    pir_gallery_id: Type.String({ maxLength: 64, description: "PIR: the owner's gallery the image is in (GET /v2/galleries); remove it to take the image out" }),
    // Glance's packaged schema-image.json: glanceclient builds --os-distro, --architecture… from these.
    ...Object.fromEntries(Object.entries(commonPropertiesSchema()).map(([key, schema]) => [key, Type.Unsafe<string>(schema)])),
  }, { additionalProperties: Type.String() }),
  links: [
    { rel: 'self', href: '{self}' },
    { rel: 'enclosure', href: '{file}' },
    { rel: 'describedby', href: '{schema}' },
  ],
} as Record<string, unknown>;
delete imageSchema.required;
delete imageSchema.type;

export const imagesSchema = {
  name: 'images',
  properties: {
    images: { type: 'array', items: imageSchema },
    schema: { type: 'string' },
    first: { type: 'string' },
    next: { type: 'string' },
  },
  links: [
    { rel: 'first', href: '{first}' },
    { rel: 'next', href: '{next}' },
    { rel: 'describedby', href: '{schema}' },
  ],
};

// ------------------------------------------------------------------ members

// Glance reads only `member` and ignores other keys: a `status` sent beside it sets nothing (pending).
export const CreateMemberBody = Type.Object({
  member: Type.String({ minLength: 1, maxLength: LIMITS.memberIdLength, description: 'The project id to share the image with' }),
}, { additionalProperties: true });

// Glance reads only `status` and ignores other keys (openstacksdk sends the member id beside it).
export const UpdateMemberBody = Type.Object({
  status: Enum(MEMBER_STATUSES, 'The status of this image member'),
}, { additionalProperties: true });

const member = Type.Object({
  image_id: Type.String({ pattern: UUID_PATTERN, description: 'An identifier for the image' }),
  member_id: Type.String({ description: 'An identifier for the image member (tenantId)' }),
  status: Enum(MEMBER_STATUSES, 'The status of this image member'),
  created_at: Type.String({ description: 'Date and time of image member creation' }),
  updated_at: Type.String({ description: 'Date and time of last modification of image member' }),
  schema: ReadOnly(Type.String()),
});

export const memberSchema = { name: 'member', ...member };

export const membersSchema = {
  name: 'members',
  properties: { members: { type: 'array', items: memberSchema }, schema: { type: 'string' } },
  links: [{ rel: 'self', href: '{self}' }, { rel: 'describedby', href: '{schema}' }],
};

// ------------------------------------------------------------------ tasks

const task = Type.Object({
  id: Type.String({ description: 'An identifier for the task (PIR: <image id>.<run>)' }),
  type: Enum(['import', 'api_image_import'], 'The type of task represented by this content'),
  status: Enum(['pending', 'processing', 'success', 'failure'], 'The current status of this task'),
  input: Nullable({ type: 'object', description: 'The parameters required by task, JSON blob' }),
  result: Nullable({ type: 'object', description: 'The result of current task, JSON blob' }),
  owner: Nullable({ type: 'string', description: 'An identifier for the owner of this task' }),
  message: Type.String({ description: 'Human-readable informative message only included when appropriate (usually on failure)' }),
  image_id: Type.String({ description: 'Image associated with the task' }),
  request_id: Nullable({ type: 'string', description: 'Human-readable informative request-id' }),
  user_id: Nullable({ type: 'string', description: 'User associated with the task' }),
  expires_at: Nullable({ type: 'string', description: 'Datetime when this resource would be subject to removal' }),
  created_at: Type.String({ description: 'Datetime when this resource was created' }),
  updated_at: Type.String({ description: 'Datetime when this resource was updated' }),
  self: Type.String(),
  schema: Type.String(),
});

/**
 * No `additionalProperties` key, as Glance's Schema.minimal() (glance/api/v2/schemas.py task/tasks):
 * openstacksdk reads that key as a dict, and `true` crashes get_task_schema().
 */
export const taskSchema = { name: 'task', ...task, links: [{ rel: 'self', href: '{self}' }, { rel: 'describedby', href: '{schema}' }] } as Record<string, unknown>;
delete taskSchema.required;

export const tasksSchema = {
  name: 'tasks',
  properties: { tasks: { type: 'array', items: taskSchema }, schema: { type: 'string' }, first: { type: 'string' }, next: { type: 'string' } },
  links: [{ rel: 'first', href: '{first}' }, { rel: 'next', href: '{next}' }, { rel: 'describedby', href: '{schema}' }],
};
