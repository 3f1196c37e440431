/**
 * Keystone v3 password login: POST /v3/auth/tokens, the token from X-Subject-Token, and the
 * image service's endpoint from the catalog.
 */
import { AuthError, PirApiError, withoutUserinfo } from './errors.js';
import { Transport, withoutVersion, type TransportOptions } from './http.js';

export interface KeystoneCredentials {
  authUrl: string;
  username: string;
  password: string;
  projectName?: string;
  projectId?: string;
  userDomainName?: string;
  projectDomainName?: string;
}

interface CatalogEntry {
  type: string;
  endpoints: { interface: string; region?: string; region_id?: string; url: string }[];
}

export interface KeystoneSession {
  token: string;
  catalog: CatalogEntry[];
}

export async function keystoneLogin(creds: KeystoneCredentials, transportOptions: TransportOptions = {}): Promise<KeystoneSession> {
  const base = creds.authUrl.replace(/\/+$/, '').replace(/\/v3$/, '');
  const transport = new Transport(base, null, { ...transportOptions, service: 'Keystone' });
  const project = creds.projectId
    ? { id: creds.projectId }
    : creds.projectName ? { name: creds.projectName, domain: { name: creds.projectDomainName ?? 'Default' } } : null;
  const body = {
    auth: {
      identity: { methods: ['password'], password: { user: { name: creds.username, domain: { name: creds.userDomainName ?? 'Default' }, password: creds.password } } },
      ...(project ? { scope: { project } } : {}),
    },
  };
  const response = await transport.call('POST', '/v3/auth/tokens', body);
  if (response.status === 401 || response.status === 403) {
    throw new AuthError(response.status, 'keystone_refused', `Keystone at ${withoutUserinfo(base)} refused the login for user '${creds.username}': check --os-username, --os-password, --os-project-name and the domain flags.`, 'POST', '/v3/auth/tokens', response.body);
  }
  if (response.status !== 201 && response.status !== 200) {
    // Said as Keystone's answer: read as PIR's, a 404 here would pass for a missing image (exit 4).
    const { errorCode, message } = PirApiError.from(response.status, response.body, 'POST', '/v3/auth/tokens');
    throw new PirApiError(response.status, errorCode, `Keystone at ${withoutUserinfo(base)} answered the login with ${message}; is --os-auth-url Keystone's v3 endpoint?`, 'POST', '/v3/auth/tokens', response.body);
  }
  const token = response.headers['x-subject-token'];
  if (!token) throw new AuthError(response.status, 'keystone_no_token', `Keystone at ${withoutUserinfo(base)} answered without an X-Subject-Token header; is --os-auth-url a Keystone v3 endpoint?`, 'POST', '/v3/auth/tokens', response.body);
  return { token, catalog: (response.body?.token?.catalog ?? []) as CatalogEntry[] };
}

/** The image service's URL in the catalog (type `image`), for one interface and optional region. */
export function imageEndpoint(session: KeystoneSession, iface = 'public', region?: string): string | null {
  for (const entry of session.catalog) {
    if (entry.type !== 'image') continue;
    const match = entry.endpoints.find((e) => e.interface === iface && (!region || e.region === region || e.region_id === region));
    if (match) return withoutVersion(match.url);
  }
  return null;
}
