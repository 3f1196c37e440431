/**
 * The ops dashboard: /ops is a static page (no data in it) with its script and the bundled
 * uPlot; its data comes from /ops/api/stream, server-sent events for an admin token only (the
 * page sends the token from the browser session with fetch, never in the URL).
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';
import { isAdmin } from '../../core/caller.js';
import { forbidden } from '../../core/errors.js';
import type { JobQueue, ManifestStore } from '../../core/ports.js';
import { opsSnapshot } from '../../infra/telemetry/ops-snapshot.js';
import { repeatPaced, type PacedLoop } from '../../infra/pacing.js';
import type { ProcessRegistry } from '../../infra/telemetry/process-registry.js';

export interface OpsDeps {
  store: ManifestStore;
  queue: JobQueue;
  registry: ProcessRegistry | null;
  /** Base URL of the trace UI (Jaeger), for links to an image's trace; null: no links. */
  traceUiUrl: string | null;
  /** How often the stream sends a snapshot (tests shorten it). */
  intervalMs?: number;
}

type Hook = (request: FastifyRequest, reply: FastifyReply) => Promise<void>;

/** The share of the time an open dashboard's snapshots may keep the stores busy. */
const OPS_SHARE = 0.2;
const ASSETS = fileURLToPath(new URL('../../../api/ops-assets/', import.meta.url));
const uplotFile = (name: string) => createRequire(import.meta.url).resolve(`uplot/dist/${name}`);
const FILES: Record<string, { path: () => string; type: string }> = {
  'app.js': { path: () => `${ASSETS}app.js`, type: 'text/javascript; charset=utf-8' },
  'app.css': { path: () => `${ASSETS}app.css`, type: 'text/css; charset=utf-8' },
  'uplot.js': { path: () => uplotFile('uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' },
  'uplot.css': { path: () => uplotFile('uPlot.min.css'), type: 'text/css; charset=utf-8' },
};
const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

export async function opsRoutes(app: FastifyInstance, deps: OpsDeps, checkToken: Hook): Promise<void> {
  const streams = new Set<ServerResponse>();
  app.addHook('preClose', async () => { for (const s of streams) s.end(); });

  app.get('/ops', async (_request, reply) => {
    const html = (await readFile(`${ASSETS}index.html`, 'utf8')).replace('__TRACE_UI_URL__', JSON.stringify(deps.traceUiUrl ?? '').replace(/</g, '\\u003c'));
    return reply.headers(SECURITY_HEADERS).type('text/html; charset=utf-8').header('cache-control', 'no-store').send(html);
  });
  app.get<{ Params: { name: string } }>('/ops/assets/:name', async (request, reply) => {
    const file = Object.hasOwn(FILES, request.params.name) ? FILES[request.params.name] : undefined;
    if (!file) return reply.code(404).type('text/plain').send('no such asset\n');
    return reply.headers(SECURITY_HEADERS).type(file.type).header('cache-control', 'no-cache').send(await readFile(file.path()));
  });
  app.get('/ops/api/stream', {
    onRequest: [checkToken, async (request) => {
      if (!isAdmin(request.caller)) throw forbidden('policy_denied', 'The ops dashboard needs a token with the admin role.');
    }],
  }, async (request, reply) => {
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-openstack-request-id': request.id, 'x-accel-buffering': 'no' });
    streams.add(raw);
    const send = async () => {
      try {
        const snapshot = await opsSnapshot(deps.store, deps.queue, deps.registry);
        raw.write(`event: snapshot\ndata: ${JSON.stringify(snapshot)}\n\n`);
      } catch (error) {
        request.log.warn({ err: error }, 'ops snapshot failed');
        raw.write(`event: problem\ndata: ${JSON.stringify({ message: (error as Error).message })}\n\n`);
      }
    };
    // A slow store (the status counts scan on FerretDB's SQLite backend) is asked less often.
    let loop: PacedLoop | null = null;
    let closed = false;
    raw.on('close', () => { closed = true; void loop?.stop(); streams.delete(raw); });
    await send();
    if (!closed) loop = repeatPaced(send, deps.intervalMs ?? 2000, OPS_SHARE, () => {});
  });
}
