/**
 * Which methods each route path takes, so that a path PIR serves, asked with a method it does
 * not take, answers 405 with `Allow` (as Glance's router answers, e.g. PUT /v2/images/{id}),
 * not 404 as for a path that does not exist. Fastify's router answers both with its not-found
 * handler and exposes no lookup by concrete path, hence this small table fed by onRoute.
 */
import type { FastifyInstance } from 'fastify';

interface PathMethods {
  pattern: RegExp;
  methods: Set<string>;
}

export class RouteMethods {
  private readonly byUrl = new Map<string, PathMethods>();
  /** Route urls whose HEAD is only Fastify's implicit copy of their GET, refused (see refuseImplicitHead). */
  private readonly implicitHead = new Set<string>();

  /** Records every route registered on `app` (and its child contexts) from now on. */
  watch(app: FastifyInstance): void {
    app.addHook('onRoute', (route) => this.add(route.url ?? route.path, route.method));
  }

  /**
   * In `app`'s context (the Image API under /v2), a GET route's implicit HEAD is not a method the
   * path takes: Glance's router answers HEAD with 405 (e.g. /v2/images/{id} takes GET, PATCH and
   * DELETE only). Call before the routes are registered; a route that declares its own HEAD
   * (`exposeHeadRoute: false` on the GET, and `app.head`) keeps it.
   */
  refuseImplicitHead(app: FastifyInstance): void {
    app.addHook('onRoute', (route) => {
      const methods = Array.isArray(route.method) ? route.method : [route.method];
      if (methods.some((m) => m.toUpperCase() === 'GET') && route.exposeHeadRoute !== false) this.implicitHead.add(route.url ?? route.path);
    });
  }

  /** Whether a HEAD request matched by the route `url` is to be refused with 405. */
  headRefused(url: string | undefined): boolean {
    return url !== undefined && this.implicitHead.has(url);
  }

  add(url: string, method: string | string[]): void {
    const methods = (Array.isArray(method) ? method : [method]).filter((m) => !(m.toUpperCase() === 'HEAD' && this.implicitHead.has(url)));
    if (methods.length === 0) return;
    let entry = this.byUrl.get(url);
    if (!entry) {
      entry = { pattern: patternOf(url), methods: new Set() };
      this.byUrl.set(url, entry);
    }
    for (const m of methods) entry.methods.add(m.toUpperCase());
  }

  /** The methods `path` is served with, sorted; empty when no route matches it. */
  allowedFor(path: string): string[] {
    const methods = new Set<string>();
    for (const { pattern, methods: ms } of this.byUrl.values()) if (pattern.test(path)) for (const m of ms) methods.add(m);
    return [...methods].sort();
  }
}

/** '/v2/images/:id/file' → /^\/v2\/images\/[^/]+\/file$/ ('*' matches the rest); exact, as the router's match. */
function patternOf(url: string): RegExp {
  const source = url.split('/').map((segment) => {
    if (segment === '*') return '.*';
    if (segment.startsWith(':')) return '[^/]+';
    return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }).join('/');
  return new RegExp(`^${source}$`);
}
