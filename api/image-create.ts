/**
 * Creating an image from Glance's create body: POST /v2/images, and the tasks API's legacy
 * import (its input's image_properties are the same body).
 */
import { randomUUID } from 'node:crypto';
import { SYSTEM_CALLER, type Caller } from '../core/caller.js';
import { badRequest } from '../core/errors.js';
import { checkSettable, WRITABLE_FIELDS } from '../core/image-entity.js';
import type { CreateImageInput, ImageService } from '../core/image-service.js';
import type { Quotas } from '../core/quota.js';
import type { ImageDoc } from '../schemas/image.js';

const CREATE_FIELDS = new Set(['id', 'os_hash_algo', 'os_hash_value', ...WRITABLE_FIELDS]);

/** Glance refuses read-only and reserved names (403) before it validates the values (400): run before the schema. */
export function checkCreateNames(body: unknown): void {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('invalid_request', 'The body must be a JSON object of image attributes, e.g. {"name": "demo", "disk_format": "qcow2", "container_format": "bare"}.');
  for (const key of Object.keys(body)) if (!CREATE_FIELDS.has(key)) checkSettable(key);
}

/** Creates the image a schema-valid create body describes, held against its owner's image quota. */
export async function createImage(
  caller: Caller, body: Record<string, unknown>, images: ImageService, quotas: Quotas, extra: Pick<CreateImageInput, 'import_task'> = {},
): Promise<ImageDoc> {
  const input: CreateImageInput = { properties: {}, ...extra };
  for (const [key, value] of Object.entries(body)) {
    if (CREATE_FIELDS.has(key)) (input as Record<string, unknown>)[key] = value;
    else input.properties![key] = value as string;
  }
  if (typeof body.os_hash_value === 'string') input.expected_sha512 = body.os_hash_value;
  // The id is settled here so that the quota hold names it (in the one spelling the image will
  // have). Only an id the client chose can be a retired one, which the store then checks.
  const chosenId = input.id !== undefined;
  input.id = (input.id ?? randomUUID()).toLowerCase();
  // Policy first (403 before 413), then the image counts against its owner's quota.
  const owner = images.authorizeCreate(caller, input) ?? caller.project_id;
  await quotas.reserveImage(owner, input.id);
  return images.create(caller, input, { chosenId }).catch(async (error: unknown) => {
    // Give the hold back, unless it is the existing image's (a duplicate id).
    if (!(await images.get(SYSTEM_CALLER, input.id!).catch(() => null))) await quotas.cancelImage(owner, input.id!);
    throw error;
  });
}
