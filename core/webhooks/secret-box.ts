/**
 * Signing secrets at rest: AES-256-GCM with the key from PIR_WEBHOOK_SECRET_KEY (or the one
 * generated into the data dir), so a database dump alone does not reveal them. The stored form
 * is `v1.<iv>.<tag>.<ciphertext>` (base64url); the secret id is bound as associated data, so a
 * ciphertext copied onto another subscription does not decrypt.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';

export class SecretBox {
  constructor(private readonly key: Buffer) {
    if (key.length !== 32) throw new Error('the webhook secret key must be 32 bytes');
  }

  seal(plain: string, context: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    cipher.setAAD(Buffer.from(context));
    const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
    return ['v1', iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), body.toString('base64url')].join('.');
  }

  /**
   * Names the key without revealing it (an HMAC of a fixed text under it), so processes that
   * share a database can tell whether they seal with the same key.
   */
  fingerprint(): string {
    return createHmac('sha256', this.key).update('pir webhook secret key fingerprint v1').digest('base64url').slice(0, 22);
  }

  /** Whether this key opens `sealed` (sealed for `context`). */
  opens(sealed: string, context: string): boolean {
    try {
      this.open(sealed, context);
      return true;
    } catch {
      return false;
    }
  }

  open(sealed: string, context: string): string {
    const [version, iv, tag, body] = sealed.split('.');
    if (version !== 'v1' || !iv || !tag || body === undefined) throw new Error('not a sealed webhook secret');
    const decipher = createDecipheriv('aes-256-gcm', this.key, Buffer.from(iv, 'base64url'));
    decipher.setAAD(Buffer.from(context));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString('utf8');
  }
}

/** A new signing secret: `whsec_` + base64 of 32 random bytes (Standard Webhooks: 24–64 bytes). */
export function newSigningSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

/** Parses PIR_WEBHOOK_SECRET_KEY: 32 bytes as 64 hex digits or base64. */
export function parseSecretKey(text: string): Buffer {
  const t = text.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, 'hex') : Buffer.from(t, 'base64');
  if (key.length !== 32) throw new Error('must be 32 bytes, written as 64 hex digits or base64');
  return key;
}
