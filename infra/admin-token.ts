/**
 * The admin token: PIR_ADMIN_TOKEN, or one generated on first start and kept in
 * <data dir>/admin-token (mode 0600) so that every process sharing the data dir agrees on it.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MIN_ADMIN_TOKEN_LENGTH } from './config.js';
import { createFileOnce } from './create-file-once.js';

export async function resolveAdminToken(configured: string | null, dataDir: string): Promise<{ token: string; generated: boolean; path: string }> {
  const path = join(dataDir, 'admin-token');
  if (configured) return { token: configured, generated: false, path };
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  // Hex: a token that could begin with '-' (base64url) is taken for an option by CLIs
  // (`glance --os-auth-token $(cat data/admin-token)` failed with "expected one argument").
  const token = randomBytes(24).toString('hex');
  if (await createFileOnce(path, token + '\n')) return { token, generated: true, path };
  const existing = (await readFile(path, 'utf8')).trim();
  if (existing.length < MIN_ADMIN_TOKEN_LENGTH) throw new Error(`${path} holds a token shorter than ${MIN_ADMIN_TOKEN_LENGTH} characters; delete it to generate a new admin token, or set PIR_ADMIN_TOKEN.`);
  return { token: existing, generated: false, path };
}
