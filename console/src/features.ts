/**
 * What this PIR offers beyond Glance, found out from the public API instead of assumed: an
 * extension is on when /v2/schemas declares it (or, for keyword search, when the list accepts
 * ?q=…&sort=relevance). The console runs on a PIR without them and lights the panels up when they land.
 */
import { api, ApiError } from './api';

export interface Features { events: boolean; galleries: boolean; search: boolean; revisions: boolean; shareLinks: boolean; tus: boolean }

async function declared(...names: string[]): Promise<boolean> {
  for (const name of names) {
    try {
      await api(`/v2/schemas/${name}`);
      return true;
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 404) throw e;
    }
  }
  return false;
}

/** A route PIR serves (anything but the router's own 404 `no_route`). */
async function routeExists(path: string): Promise<boolean> {
  try {
    await api(path);
    return true;
  } catch (e) {
    return !(e instanceof ApiError && e.status === 404 && e.code === 'no_route');
  }
}

async function acceptsQuery(): Promise<boolean> {
  try {
    await api('/v2/images?q=pir&sort=relevance&limit=1');
    return true;
  } catch (e) {
    // Without search, ?q= would be an extra-property filter (200): sort=relevance, which only
    // keyword search defines, is what a PIR without it refuses (400).
    if (e instanceof ApiError && e.status === 400) return false;
    throw e;
  }
}

export async function detectFeatures(): Promise<Features> {
  const [events, galleries, search, revisions, shareLinks, tus] = await Promise.all([
    declared('events'), declared('galleries', 'gallery').then((yes) => yes || routeExists('/v2/galleries')), acceptsQuery(), declared('revisions', 'revision'),
    declared('share-links', 'share-link'), speaksTus(),
  ]);
  return { events, galleries, search, revisions, shareLinks, tus };
}

/** tus answers OPTIONS on its upload URL with Tus-Version (the protocol's discovery), whatever the image. */
async function speaksTus(): Promise<boolean> {
  try {
    const response = await api(`/v2/images/${crypto.randomUUID()}/uploads`, { method: 'OPTIONS' });
    return response.headers.has('tus-version');
  } catch {
    return false;
  }
}

/**
 * Whether PIR sits behind Keystone and exchanges a password for a token (POST /auth/tokens): the
 * page says so in a meta tag (api/routes/console.ts). Asking the API instead would take a request
 * that fails (401) before sign-in, which the browser logs as an error.
 */
export function offersPasswordSignIn(): boolean {
  const meta = document.querySelector<HTMLMetaElement>('meta[name="pir-sign-in"]');
  return (meta?.content ?? '').split(/\s+/).includes('password');
}
