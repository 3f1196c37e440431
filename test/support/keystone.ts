/**
 * The local Keystone (infra/local/keystone.sh) as the tests use it: tokens for the seeded users
 * (password "<name>-pass", admin's "admin-pass"), revocation, and catalog endpoints for a PIR
 * started on a test port, each in a region of its own so that test runs never disturb each other.
 */
import { services } from './services.js';

export const KEYSTONE = services.keystoneUrl;

/**
 * fetch, tried once more when the connection fails before an answer: undici may send on a kept-alive
 * connection that uwsgi is closing at that moment ("fetch failed"); a request never answered is
 * safe to send again here (a token, a catalog entry of the test's own).
 */
async function keystoneFetch(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    await new Promise((resolve) => setTimeout(resolve, 200));
    return fetch(url, init);
  }
}

export interface IssuedToken { token: string; expiresAt: number; projectId: string; userId: string; roles: string[] }

/** A project-scoped token for a seeded user (e.g. demo in demo, other in other, admin in admin). */
export async function issueToken(username: string, project: string, password = `${username}-pass`): Promise<IssuedToken> {
  const response = await keystoneFetch(`${KEYSTONE}/auth/tokens?nocatalog`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ auth: {
      identity: { methods: ['password'], password: { user: { name: username, domain: { id: 'default' }, password } } },
      scope: { project: { name: project, domain: { id: 'default' } } },
    } }),
  });
  if (response.status !== 201) throw new Error(`keystone: token for ${username}/${project}: HTTP ${response.status} ${await response.text()}`);
  const body = await response.json() as { token: { expires_at: string; project: { id: string }; user: { id: string }; roles: { name: string }[] } };
  return {
    token: response.headers.get('x-subject-token')!,
    expiresAt: Date.parse(body.token.expires_at),
    projectId: body.token.project.id,
    userId: body.token.user.id,
    roles: body.token.roles.map((r) => r.name),
  };
}

/** A system-scoped token (scope {"system": {"all": true}}): the seeded admin holds the system admin role. */
export async function issueSystemToken(username = 'admin', password = process.env.PIR_KEYSTONE_ADMIN_PASSWORD || 'admin-pass'): Promise<string> {
  const response = await keystoneFetch(`${KEYSTONE}/auth/tokens?nocatalog`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ auth: {
      identity: { methods: ['password'], password: { user: { name: username, domain: { id: 'default' }, password } } },
      scope: { system: { all: true } },
    } }),
  });
  if (response.status !== 201) throw new Error(`keystone: system token for ${username}: HTTP ${response.status} ${await response.text()}`);
  return response.headers.get('x-subject-token')!;
}

/** Revokes a token, as its own user may. */
export async function revokeToken(token: string): Promise<void> {
  const response = await keystoneFetch(`${KEYSTONE}/auth/tokens`, { method: 'DELETE', headers: { 'X-Auth-Token': token, 'X-Subject-Token': token } });
  if (response.status !== 204) throw new Error(`keystone: revoke: HTTP ${response.status}`);
}

async function asAdmin(method: string, path: string, body?: unknown): Promise<any> {
  const admin = await issueToken('admin', 'admin', process.env.PIR_KEYSTONE_ADMIN_PASSWORD || 'admin-pass');
  const response = await keystoneFetch(`${KEYSTONE}${path}`, {
    method,
    headers: { 'X-Auth-Token': admin.token, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status >= 300) throw new Error(`keystone: ${method} ${path}: HTTP ${response.status} ${await response.text()}`);
  return response.status === 204 ? null : response.json();
}

/**
 * Puts `url` in the catalog as the image service's public and internal endpoints in a new
 * region; clients choose it with OS_REGION_NAME. Returns the region and a remover.
 */
export async function catalogRegionFor(url: string, region: string): Promise<{ region: string; remove(): Promise<void> }> {
  const found = await asAdmin('GET', '/services?type=image');
  const serviceId: string | undefined = found.services[0]?.id;
  if (!serviceId) throw new Error('keystone: no image service in the catalog; was it seeded (infra/local/services.sh start keystone)?');
  await asAdmin('POST', '/regions', { region: { id: region, description: 'PIR test run' } });
  const endpoints: string[] = [];
  for (const iface of ['public', 'internal']) {
    const made = await asAdmin('POST', '/endpoints', { endpoint: { service_id: serviceId, interface: iface, region_id: region, url } });
    endpoints.push(made.endpoint.id);
  }
  return {
    region,
    async remove() {
      for (const id of endpoints) await asAdmin('DELETE', `/endpoints/${id}`);
      await asAdmin('DELETE', `/regions/${region}`);
    },
  };
}

/**
 * Puts `url` in the catalog under a service type of its own (`type`, made here and removed with
 * the endpoints), public and internal, in `region`: what tempest's `alternate_image_endpoint`
 * names to reach a second api process. A type per run, as tempest takes the first service of a
 * type and would miss this region's endpoint if another run's service of that type came first.
 */
export async function catalogServiceFor(url: string, region: string, type: string): Promise<{ remove(): Promise<void> }> {
  const made = await asAdmin('POST', '/services', { service: { type, name: type, description: 'PIR test run: a second api process' } });
  const serviceId: string = made.service.id;
  const endpoints: string[] = [];
  const remove = async () => {
    for (const id of endpoints) await asAdmin('DELETE', `/endpoints/${id}`);
    await asAdmin('DELETE', `/services/${serviceId}`);
  };
  try {
    for (const iface of ['public', 'internal']) {
      const endpoint = await asAdmin('POST', '/endpoints', { endpoint: { service_id: serviceId, interface: iface, region_id: region, url } });
      endpoints.push(endpoint.endpoint.id);
    }
  } catch (error) {
    await remove().catch(() => {});
    throw error;
  }
  return { remove };
}
