/**
 * The web console: /console serves the single page built by Vite from console/ (npm run build
 * puts it in dist/console-app), its hashed assets under /console/assets/ with a year of
 * immutable caching. The page is static (no data, no token in it) under a strict
 * Content-Security-Policy: scripts and styles from PIR only, no inline script, requests only to
 * PIR itself. Everything it shows comes from the public API with the token the user signs in with.
 * The one thing the page says of the deployment is which sign-in it offers (a meta tag), so the
 * console need not probe for it with a request that can only fail before sign-in.
 */
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { sendError } from '../error-handler.js';

const BUILT = fileURLToPath(new URL('../../console-app/', import.meta.url));

export const CONSOLE_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
};

const TYPES: Record<string, string> = {
  js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8', svg: 'image/svg+xml', png: 'image/png', woff2: 'font/woff2', map: 'application/json',
};

/** The built files, read once at start (a few hundred KiB): names are content hashes, so they never change while PIR runs. */
async function loadBuild(): Promise<{ index: string; assets: Map<string, Buffer> } | null> {
  try {
    const index = await readFile(`${BUILT}index.html`, 'utf8');
    const assets = new Map<string, Buffer>();
    for (const name of await readdir(`${BUILT}assets`)) assets.set(name, await readFile(`${BUILT}assets/${name}`));
    return { index, assets };
  } catch {
    return null;
  }
}

/** The page's placeholder (console/index.html) for the sign-in forms this PIR serves. */
const SIGN_IN_META = '<meta name="pir-sign-in" content="token">';

export interface ConsoleOptions {
  /** PIR runs behind Keystone and serves POST /auth/tokens: the page offers username and password too. */
  passwordSignIn: boolean;
}

export async function consoleRoutes(app: FastifyInstance, options: ConsoleOptions): Promise<void> {
  const build = await loadBuild();
  // A build from before the tag would hide the password form without a word.
  if (build && !build.index.includes(SIGN_IN_META)) app.log.warn('dist/console-app/index.html has no pir-sign-in meta tag: rebuild the console (npm run build)');
  const index = build && options.passwordSignIn ? build.index.replace(SIGN_IN_META, '<meta name="pir-sign-in" content="token password">') : build?.index;
  const page = async (_request: unknown, reply: import('fastify').FastifyReply) => {
    if (!build) {
      return reply.code(503).type('text/plain; charset=utf-8').header('cache-control', 'no-store')
        .send('The web console is not built: run `npm run build` (it builds console/ into dist/console-app).\n');
    }
    return reply.headers(CONSOLE_HEADERS).type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(index);
  };
  app.get('/console', page);
  app.get('/console/', page);
  app.get<{ Params: { name: string } }>('/console/assets/:name', async (request, reply) => {
    const body = build?.assets.get(request.params.name);
    // In PIR's error shape, as every other 404 (the name is the client's: only its length is bounded).
    if (!body) {
      reply.headers(CONSOLE_HEADERS);
      return sendError(reply, 404, 'no_route', `There is no console asset ${JSON.stringify(request.params.name.slice(0, 200))}; the page names the assets it needs (an old page: reload /console).`);
    }
    const ext = request.params.name.slice(request.params.name.lastIndexOf('.') + 1);
    return reply.headers(CONSOLE_HEADERS).type(TYPES[ext] ?? 'application/octet-stream')
      .header('cache-control', 'public, max-age=31536000, immutable').send(body);
  });
}
