/**
 * Glance's location API (README "Registering existing bytes"):
 *   POST /v2/images/{id}/locations {"url", "validation_data"?}   → 202, registration runs in the background
 *   GET  /v2/images/{id}/locations                               → [{"url", "metadata"}] (service users, admins)
 * and the older PATCH form, [{"op": "add", "path": "/locations/-", "value": {"url", "metadata", "validation_data"?}}]
 * (what `glance location-add` sends), handled by locationPatch below for api/routes/images.ts.
 */
import type { FastifyInstance } from 'fastify';
import type { Caller } from '../../core/caller.js';
import { fail } from '../../core/error-catalog.js';
import { locationEntry } from '../../core/external-location.js';
import type { ImageService } from '../../core/image-service.js';
import type { LocationRegistrations } from '../../ingest/register-location.js';

const addLocationBody = {
  type: 'object',
  required: ['url'],
  properties: {
    url: { type: 'string', minLength: 1, maxLength: 4096 },
    validation_data: { type: 'object' },
    metadata: { type: 'object' },
  },
  additionalProperties: false,
} as const;

export async function imageLocationRoutes(app: FastifyInstance, images: ImageService, locations: LocationRegistrations): Promise<void> {
  app.post('/v2/images/:id/locations', { schema: { body: addLocationBody } }, async (request, reply) => {
    await locations.start(request.caller, (request.params as { id: string }).id, request.body as Record<string, unknown>);
    return reply.code(202).send();
  });

  app.get('/v2/images/:id/locations', async (request) => {
    const location = await images.locationOf(request.caller, (request.params as { id: string }).id);
    return location ? [locationEntry(location)] : [];
  });
}

/** Whether a PATCH body names /locations at all (then locationPatch handles it whole). */
export function touchesLocations(body: unknown): boolean {
  return Array.isArray(body) && body.some((op) => typeof pathOf(op) === 'string' && /^\/locations(\/|$)/.test(pathOf(op)!));
}

/**
 * A PATCH on /locations: only adding the first location to a queued image, alone in its PATCH
 * (`add` at /locations/- or /locations/0). Replacing or removing a registered location would
 * change an image's bytes under its checksum: refused (403, as Glance refuses removing the last one).
 */
export async function locationPatch(caller: Caller, id: string, body: unknown[], locations: LocationRegistrations, images: ImageService): Promise<void> {
  if (!locations.settings.showLocations) {
    await images.get(caller, id); // an image the caller cannot see is a 404 first, as in Glance
    throw fail('locations_hidden', "It's not allowed to add locations if locations are invisible (PIR_SHOW_MULTIPLE_LOCATIONS is off): use POST /v2/images/{id}/locations.");
  }
  const op = body[0] as Record<string, unknown>;
  const path = pathOf(op);
  const name = typeof op.op === 'string' ? op.op : ['add', 'replace', 'remove'].find((k) => k in op);
  if (body.length !== 1 || name !== 'add' || (path !== '/locations/-' && path !== '/locations/0')) {
    throw fail('location_immutable', 'Only one location can be added, alone in its PATCH ([{"op": "add", "path": "/locations/-", "value": {"url": …, "metadata": {}}}]), to a queued image; a registered location is never replaced or removed (delete the image instead).');
  }
  const value = op.value;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw fail('location_invalid', 'The value of an add at /locations/- is {"url": …, "metadata": {…}, "validation_data"?: {…}}.');
  const extra = Object.keys(value).filter((k) => !['url', 'metadata', 'validation_data'].includes(k));
  if (extra.length) throw fail('location_invalid', `A location has url, metadata and validation_data only (got ${extra.slice(0, 3).map((k) => k.slice(0, 40)).join(', ')}).`);
  await locations.start(caller, id, value as Record<string, unknown>, 'patch');
}

/** The path of a v2.1 ({"op", "path"}) or v2.0 ({"add": path}) operation. */
function pathOf(op: unknown): string | undefined {
  if (typeof op !== 'object' || op === null) return undefined;
  const o = op as Record<string, unknown>;
  const path = typeof o.op === 'string' ? o.path : o.add ?? o.replace ?? o.remove;
  return typeof path === 'string' ? path : undefined;
}
