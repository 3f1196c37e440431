/**
 * GET /v2/events: the caller's image events as server-sent events, for the web console and any
 * client that wants to watch without polling. Each message is the webhook body ({type,
 * timestamp, data: the image as the API shows it}) and goes only to callers the webhooks'
 * visibility rule lets see the image (core/webhooks/visibility.ts); a deleted image's last
 * event goes to its owner project (and admins) only. The token comes in X-Auth-Token as on every
 * /v2 route (EventSource cannot send it: clients read the stream with fetch).
 */
import type { FastifyInstance } from 'fastify';
import type { Authenticator } from '../../core/authenticator.js';
import type { Caller } from '../../core/caller.js';
import { fail } from '../../core/error-catalog.js';
import { PirError } from '../../core/errors.js';
import type { LiveEvents } from '../../core/live-events.js';
import { enforce, hasRole, isAdminCaller } from '../../core/policy.js';
import { canSeeImage } from '../../core/webhooks/visibility.js';
import { DELETED, membershipAudience } from '../../core/webhooks/matching.js';
import type { GalleryGrant } from '../../core/ports.js';
import { eventBody } from '../../core/webhooks/fanout.js';
import type { PirEvent } from '../../schemas/events.js';
import type { ImageDoc } from '../../schemas/image.js';
import { imageView } from '../glance-view.js';
import { StreamSlots } from '../stream-slots.js';

/** A comment line this often keeps proxies and load balancers from closing a quiet stream. */
const KEEPALIVE_MS = 25_000;
/** What a client waits before reconnecting after the stream drops. */
const RETRY_MS = 3000;
/**
 * How often an open stream asks again whether its token is still good: a revoked or expired
 * token (or one whose project or roles changed) ends the stream within this, instead of it
 * going on for as long as the connection lasts.
 */
export const TOKEN_RECHECK_MS = 5000;
/**
 * A client that stops reading must not make PIR hold every event it may see: its stream is closed
 * once this much waits unsent, or once what waits has not been taken for STALLED_MS (a quiet
 * stream's keepalives pile up slowly but its connection would otherwise never end).
 */
export const MAX_BUFFERED_BYTES = 1 << 20;
const STALLED_MS = 120_000;
/**
 * Open streams per user and project (PIR_EVENT_STREAMS_PER_USER), per API process: a console tab
 * holds one, so a person's tabs and scripts fit, while one runaway client cannot hold thousands
 * of sockets and listeners. Keyed by user and project, not token: a user can get a new token at
 * will, and one user's streams must not use up a colleague's.
 */
export const DEFAULT_STREAMS_PER_USER = 16;

export interface EventStreamSettings {
  recheckMs: number;
  maxBufferedBytes: number;
  streamsPerUser: number;
}

export const eventsSchema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  name: 'events',
  description: 'GET /v2/events: text/event-stream of the image events the caller may see. The first message is `event: pir.hello` with data {project_id, user_id, roles} (the caller); then each event: `id` (the event id), `event` (its type), `data` (this JSON object). The token is checked again every few seconds: once it is no longer valid, or stands for another project or other roles, the last message is `event: pir.goodbye` with data {reason: token_invalid | caller_changed} and the stream ends.',
  type: 'object',
  properties: {
    type: { type: 'string', description: 'image.created, image.upload.started, image.staged, image.import.started, image.stage.started, image.stage.completed, image.stage.failed, image.active, image.killed, image.updated, image.deleted, image.deactivated, image.reactivated, image.member.*' },
    timestamp: { type: 'string', format: 'date-time' },
    data: { type: 'object', description: 'The image as GET /v2/images/{id} shows it now; for image.deleted only {id, status: "deleted", owner}.' },
  },
  required: ['type', 'timestamp', 'data'],
};

/** `grants`: the galleries shared with the caller's project (core/event-audience.ts loads them when they matter). */
export function mayReceive(caller: Caller, event: PirEvent, doc: ImageDoc | null, grants: readonly GalleryGrant[] = []): boolean {
  if (!hasRole(caller, 'reader')) return false; // as get_image (the stream itself refuses such callers)
  // A deletion goes to the owner and admins only, purged yet or not (as the webhooks': core/webhooks/matching.ts).
  const owner = doc ? doc.owner : (event.data as { owner?: string | null }).owner ?? null;
  const ownerOrAdmin = isAdminCaller(caller) || (owner !== null && owner === caller.project_id);
  const membership = membershipAudience(event.type, event.data, caller.project_id, ownerOrAdmin, doc);
  if (membership !== 'as-usual') return membership === 'told';
  if (doc && event.type !== DELETED) return canSeeImage(caller, doc, grants);
  return ownerOrAdmin;
}

function sameCaller(a: Caller, b: Caller): boolean {
  return a.project_id === b.project_id && a.user_id === b.user_id && [...a.roles].sort().join() === [...b.roles].sort().join();
}

export async function eventRoutes(app: FastifyInstance, live: LiveEvents, authenticator: Authenticator, settings: Partial<EventStreamSettings> = {}): Promise<void> {
  const { recheckMs = TOKEN_RECHECK_MS, maxBufferedBytes = MAX_BUFFERED_BYTES, streamsPerUser = DEFAULT_STREAMS_PER_USER } = settings;
  const slots = new StreamSlots(streamsPerUser);
  const streams = new Set<() => void>();
  app.addHook('preClose', async () => { for (const end of streams) end(); });
  app.get('/v2/schemas/events', async () => eventsSchema);

  app.get('/v2/events', async (request, reply) => {
    const caller = request.caller;
    // The stream shows images as GET /v2/images does: it takes the reader role.
    enforce(caller, 'get_images', { owner: caller.project_id });
    const release = slots.take(`${caller.project_id}\n${caller.user_id}`);
    if (!release) {
      throw fail('too_many_streams', `User ${caller.user_id} of project ${caller.project_id} has ${streamsPerUser} event streams open on this PIR, the most one user may (PIR_EVENT_STREAMS_PER_USER); close one (a console tab, a client) and connect again.`);
    }
    reply.hijack();
    const raw = reply.raw;
    // A client that left while its token was being checked is gone already: its 'close' will not
    // come again, so it gets no stream, and its slot and timers are never taken.
    if (raw.destroyed || request.raw.destroyed || raw.socket?.destroyed !== false) {
      release();
      raw.destroy();
      return;
    }
    // The slot is the stream's until its connection closes, whichever side ends it.
    raw.once('close', release);
    raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store',
      'x-openstack-request-id': request.id, 'x-accel-buffering': 'no', 'x-content-type-options': 'nosniff',
    });
    // First message: who the stream is for, so a client knows its own project and roles (which
    // images it may edit) without another call. It is the caller's own identity, nothing more.
    let emptiedAt = Date.now();
    raw.on('drain', () => { emptiedAt = Date.now(); });
    const send = (text: string) => {
      if (raw.writableEnded || raw.destroyed) return;
      if (raw.writableLength === 0) emptiedAt = Date.now();
      else if (raw.writableLength + text.length > maxBufferedBytes || Date.now() - emptiedAt > STALLED_MS) {
        request.log.info({ buffered_bytes: raw.writableLength }, 'event stream closed: its client stopped reading');
        raw.destroy();
        return;
      }
      raw.write(text);
    };
    const hello = { project_id: caller.project_id, user_id: caller.user_id, roles: caller.roles };
    send(`retry: ${RETRY_MS}\nevent: pir.hello\ndata: ${JSON.stringify(hello)}\n\n`);
    const stopListening = live.listen(async (event, audience) => {
      // Best effort like the stream itself: grants that cannot be read send nothing.
      const grants = await audience.grantsFor(caller).catch(() => []);
      if (!mayReceive(caller, event, audience.doc, grants)) return;
      send(`id: ${event.id}\nevent: ${event.type}\ndata: ${eventBody(event, audience.doc, imageView)}\n\n`);
    });
    const keepalive = setInterval(() => send(': keepalive\n\n'), KEEPALIVE_MS);
    const end = () => { raw.end(); };
    const goodbye = (reason: string) => {
      if (raw.writableEnded) return;
      send(`event: pir.goodbye\ndata: ${JSON.stringify({ reason })}\n\n`);
      end();
    };
    const token = request.headers['x-auth-token'] as string;
    const recheck = setInterval(() => {
      authenticator.authenticate(token).then(
        (now) => { if (!sameCaller(caller, now)) goodbye('caller_changed'); },
        // Identity unreachable ('unavailable') is ours, not the token's: the stream goes on.
        (error: unknown) => { if (error instanceof PirError && error.kind === 'unauthorized') goodbye('token_invalid'); },
      );
    }, recheckMs);
    streams.add(end);
    raw.on('close', () => { clearInterval(keepalive); clearInterval(recheck); stopListening(); streams.delete(end); });
  });
}
