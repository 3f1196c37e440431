/** Reading and replacing a subscription's signing secrets (sealed at rest by SecretBox). */
import type { SecretBox } from './secret-box.js';
import { newSigningSecret } from './secret-box.js';
import type { StoredSecret, Subscription } from './model.js';

/** The secrets that sign now: the newest, and older ones whose grace period has not ended. */
export function liveSecrets(box: SecretBox, sub: Subscription, now = Date.now()): string[] {
  return sub.secrets
    .filter((s) => s.expires_at === null || Date.parse(s.expires_at) > now)
    .map((s) => box.open(s.enc, sub.id));
}

/** A new secret for the subscription: returned in clear once, stored sealed. */
export function sealNewSecret(box: SecretBox, subscriptionId: string, at: string): { secret: string; stored: StoredSecret } {
  const secret = newSigningSecret();
  return { secret, stored: { enc: box.seal(secret, subscriptionId), created_at: at, expires_at: null } };
}

/** After a rotation: the new secret first, the previous live ones expiring after the grace period; expired ones dropped. */
export function rotateSecrets(current: StoredSecret[], fresh: StoredSecret, graceSeconds: number, now = Date.now()): StoredSecret[] {
  const until = new Date(now + graceSeconds * 1000).toISOString();
  const kept = current
    .filter((s) => s.expires_at === null || Date.parse(s.expires_at) > now)
    .map((s) => ({ ...s, expires_at: s.expires_at === null || Date.parse(s.expires_at) > Date.parse(until) ? until : s.expires_at }));
  return [fresh, ...(graceSeconds > 0 ? kept : [])];
}
