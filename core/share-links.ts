/**
 * Share-link tokens: 16 bytes of the image's UUID followed by 32 random bytes (256 bits),
 * base64url. The image part lets the unauthenticated route find the image in one read; the
 * random part makes the token unguessable. Only sha256(token) is stored, and tokens never
 * reach a log (api/http-hygiene.ts redacts /v2/shared/…).
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { ShareLink } from '../schemas/image.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const TOKEN = /^[A-Za-z0-9_-]{64}$/;
const SECRET_BYTES = 32;

export function newShareLink(imageId: string, expiresInSeconds: number, createdBy: ShareLink['created_by']): { link: ShareLink; token: string } {
  if (!UUID.test(imageId)) throw new Error(`image id ${imageId} is not a UUID`);
  const token = Buffer.concat([Buffer.from(imageId.replace(/-/g, ''), 'hex'), randomBytes(SECRET_BYTES)]).toString('base64url');
  const now = Date.now();
  const link: ShareLink = {
    id: randomUUID(),
    token_sha256: tokenHash(token),
    created_at: new Date(now).toISOString(),
    expires_at: new Date(now + expiresInSeconds * 1000).toISOString(),
    created_by: createdBy,
  };
  return { link, token };
}

/** The image a well-formed token names, or null for anything else. */
export function imageIdOfToken(token: string): string | null {
  if (!TOKEN.test(token)) return null;
  const hex = Buffer.from(token, 'base64url').subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The live link `token` opens among `links` (not expired), compared in constant time. */
export function findLink(links: ShareLink[] | undefined, token: string, now = Date.now()): ShareLink | null {
  const wanted = Buffer.from(tokenHash(token), 'hex');
  let found: ShareLink | null = null;
  for (const link of links ?? []) {
    const stored = Buffer.from(link.token_sha256, 'hex');
    if (stored.length === wanted.length && timingSafeEqual(stored, wanted) && Date.parse(link.expires_at) > now) found = link;
  }
  return found;
}

function tokenHash(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}
