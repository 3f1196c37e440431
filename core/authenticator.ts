/**
 * The authentication port: turns the token a request carries into the Caller every service
 * method takes. Adapters (infra/identity) check tokens against a tokens file or Keystone.
 */
import type { Caller } from './caller.js';
import { PirError } from './errors.js';

export interface Authenticator {
  /**
   * The caller a token stands for. Throws PirError 'unauthorized' for a token that is not valid
   * (the client's fault) and 'unavailable' when the identity source cannot be asked (ours).
   */
  authenticate(token: string): Promise<Caller>;
  /** The WWW-Authenticate value sent with a 401 (Keystone's `Keystone uri='…'`), or null. */
  readonly challenge: string | null;
  /**
   * Optional: resolves when tokens can be checked now (Keystone: PIR's own service login works),
   * else rejects with why; /readyz asks it.
   */
  ready?(): Promise<void>;
  close(): Promise<void>;
}

/** Keystone's default implied roles: admin implies member, member implies reader. */
const IMPLIED: Record<string, string[]> = { admin: ['member'], member: ['reader'] };

/** The roles with every role they imply, as Keystone lists them in a validated token. */
export function withImpliedRoles(roles: readonly string[]): string[] {
  const all: string[] = [];
  const visit = (role: string) => {
    if (all.includes(role)) return;
    all.push(role);
    for (const implied of IMPLIED[role] ?? []) visit(implied);
  };
  roles.forEach(visit);
  return all;
}

export const tokenInvalid = (message = 'The X-Auth-Token is not valid (unknown, expired or revoked); get a new token and retry.') =>
  new PirError('unauthorized', 'token_invalid', message);
