/**
 * POST /auth/tokens (only when PIR runs behind Keystone): exchanges a username, password and
 * project for a project-scoped Keystone token, for the web console. Browsers cannot be relied on
 * to reach Keystone's /v3/auth/tokens themselves (Keystone rarely sends CORS headers, and it is
 * often not reachable from users' networks at all), so PIR forwards the password request and
 * answers the token in the JSON body: never in a cookie (no CSRF by construction), never in a URL.
 * Nothing of the request is logged but the user and project names.
 */
import type { FastifyInstance } from 'fastify';
import { PirError } from '../../core/errors.js';

export interface TokenExchangeSettings {
  /** Keystone's identity v3 URL, e.g. http://keystone:5000/v3. */
  url: string;
  timeoutSeconds: number;
}

interface Credentials { username: string; password: string; project: string; user_domain?: string; project_domain?: string }

const name = { type: 'string', minLength: 1, maxLength: 255 } as const;
const bodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['username', 'password', 'project'],
  properties: { username: name, password: { type: 'string', minLength: 1, maxLength: 4096 }, project: name, user_domain: name, project_domain: name },
} as const;

export async function tokenExchangeRoutes(app: FastifyInstance, settings: TokenExchangeSettings): Promise<void> {
  app.post<{ Body: Credentials }>('/auth/tokens', { schema: { body: bodySchema } }, async (request, reply) => {
    const c = request.body;
    const userDomain = c.user_domain ?? 'Default';
    const projectDomain = c.project_domain ?? userDomain;
    let response: Response;
    try {
      response = await fetch(`${settings.url.replace(/\/+$/, '')}/auth/tokens?nocatalog`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ auth: {
          identity: { methods: ['password'], password: { user: { name: c.username, domain: { name: userDomain }, password: c.password } } },
          scope: { project: { name: c.project, domain: { name: projectDomain } } },
        } }),
        signal: AbortSignal.timeout(settings.timeoutSeconds * 1000),
      });
    } catch {
      throw new PirError('unavailable', 'identity_unavailable', 'Keystone did not answer the sign-in; retry later.', true);
    }
    if (response.status === 401 || response.status === 403 || response.status === 404) {
      await response.body?.cancel();
      request.log.info({ user: c.username, project: c.project, keystone_status: response.status }, 'keystone refused a sign-in');
      throw new PirError('unauthorized', 'credentials_refused', 'Keystone refused this username, password and project (or the user has no role on the project); check them and retry.');
    }
    const token = response.headers.get('x-subject-token');
    const body = await response.json().catch(() => null) as { token?: { expires_at?: string; user?: { id?: string; name?: string }; project?: { id?: string; name?: string }; roles?: { name?: string }[] } } | null;
    if (response.status !== 201 || !token || !body?.token) {
      throw new PirError('unavailable', 'identity_unavailable', `Keystone answered the sign-in with HTTP ${response.status}; retry later.`, true);
    }
    const t = body.token;
    return reply.code(201).header('cache-control', 'no-store').send({
      token,
      expires_at: t.expires_at ?? null,
      user: { id: t.user?.id ?? null, name: t.user?.name ?? null },
      project: { id: t.project?.id ?? null, name: t.project?.name ?? null },
      roles: (t.roles ?? []).map((r) => r.name).filter((n): n is string => typeof n === 'string'),
    });
  });
}
