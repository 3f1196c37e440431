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

  /** Records every route registered on `app` (and its child contexts) from now on. */
  watch(app: FastifyInstance): void {
    app.addHook('onRoute', (route) => this.add(route.url ?? route.path, route.method));
  }

  add(url: string, method: string | string[]): void {
    let entry = this.byUrl.get(url);
    if (!entry) {
      entry = { pattern: patternOf(url), methods: new Set() };
      this.byUrl.set(url, entry);
    }
    for (const m of Array.isArray(method) ? method : [method]) entry.methods.add(m.toUpperCase());
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
