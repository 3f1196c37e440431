/** JSON Schemas of the webhooks extension: request bodies, and /v2/schemas/webhook(s). */
import { WEBHOOK_EVENTS } from '../core/webhooks/model.js';
import { VISIBILITIES } from '../schemas/image.js';

const eventPattern = '^image\\.(?:[a-z_]+\\.)*(?:[a-z_]+|\\*)$';
const stringList = (max: number) => ({ type: 'array', maxItems: max, items: { type: 'string', minLength: 1, maxLength: 255 } });

export const filtersSchema = {
  type: 'object',
  properties: {
    tags: stringList(64),
    visibility: { type: 'array', maxItems: 8, items: { type: 'string', enum: [...VISIBILITIES] } },
    image_ids: stringList(1000),
    name_prefix: { type: 'string', minLength: 1, maxLength: 255 },
  },
  additionalProperties: false,
} as const;

const writable = {
  url: { type: 'string', minLength: 1, maxLength: 2048 },
  events: { type: 'array', minItems: 1, maxItems: 32, items: { type: 'string', pattern: eventPattern, maxLength: 64 } },
  description: { type: 'string', maxLength: 1024 },
  filters: filtersSchema,
  enabled: { type: 'boolean' },
  all_projects: { type: 'boolean' },
} as const;

export const createWebhookBody = { type: 'object', required: ['url', 'events'], properties: writable, additionalProperties: false } as const;
export const updateWebhookBody = { type: 'object', properties: writable, additionalProperties: false, minProperties: 1 } as const;

export const webhookSchema = {
  name: 'webhook',
  description: `A subscription to image events, delivered per Standard Webhooks. Event types: ${WEBHOOK_EVENTS.join(', ')}, webhook.ping; "image.*" and "image.member.*" match several.`,
  properties: {
    id: { type: 'string', readOnly: true },
    ...writable,
    secret: { type: 'string', readOnly: true, description: 'whsec_…: returned only by create and rotate-secret.' },
    project_id: { type: 'string', readOnly: true },
    disabled_reason: { type: ['null', 'string'], readOnly: true },
    disabled_at: { type: ['null', 'string'], readOnly: true },
    consecutive_failures: { type: 'integer', readOnly: true },
    secret_rotated_at: { type: 'string', readOnly: true },
    created_at: { type: 'string', readOnly: true },
    updated_at: { type: 'string', readOnly: true },
    self: { type: 'string', readOnly: true },
    deliveries: { type: 'string', readOnly: true },
    schema: { type: 'string', readOnly: true },
  },
  additionalProperties: false,
} as const;

export const webhooksSchema = {
  name: 'webhooks',
  properties: { webhooks: { type: 'array', items: webhookSchema }, first: { type: 'string' }, next: { type: 'string' }, schema: { type: 'string' } },
  links: [{ rel: 'first', href: '{first}' }, { rel: 'next', href: '{next}' }, { rel: 'describedby', href: '{schema}' }],
} as const;
