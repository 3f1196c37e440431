/**
 * PIR_STORES and PIR_DEFAULT_STORE: Glance's multi-store (enabled_backends + default_backend).
 *
 *   PIR_STORES=fast=fs:/var/lib/pir/fast,cheap=s3,archive=s3:archive/
 *
 * Each entry is `<id>=<kind>[:<argument>]`:
 *   fs:<absolute directory>   a filesystem store rooted there (images/ and staging/ below it)
 *   s3[:<key prefix>]         the S3 bucket of the PIR_S3_* settings, under its own key prefix
 *                             (default: PIR_S3_PREFIX followed by `<id>/`)
 * PIR_DEFAULT_STORE names the default store (first entry when unset): uploads without a chosen
 * store land there, and the pipeline stages every image in it.
 *
 * Unset, PIR has one store, id `local`: the filesystem under PIR_DATA_DIR, or the S3 bucket when
 * PIR_S3_ENDPOINT is set (exactly the behaviour from before multi-store).
 */
import { isAbsolute, resolve } from 'node:path';

export type StoreSpec =
  | { id: string; kind: 'fs'; dir: string }
  | { id: string; kind: 's3'; prefix: string };

export interface StoresConfig {
  /** Null: the single store of before (id SINGLE_STORE_ID). */
  stores: StoreSpec[] | null;
  defaultStore: string;
}

/** The id of the one store when PIR_STORES is unset. */
export const SINGLE_STORE_ID = 'local';

/** Glance store ids are config group names; `os_glance_` ones are reserved for Glance's own stores. */
const STORE_ID = /^[a-z][a-z0-9_-]{0,62}$/;
const PREFIX = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*\/$/;

export class StoreConfigError extends Error {
  constructor(readonly variable: string, message: string) {
    super(message);
  }
}

export function parseStores(env: Record<string, string | undefined>, s3Prefix: string | null): StoresConfig {
  const raw = (env.PIR_STORES ?? '').trim();
  const wantedDefault = (env.PIR_DEFAULT_STORE ?? '').trim();
  if (!raw) {
    if (wantedDefault && wantedDefault !== SINGLE_STORE_ID) {
      throw new StoreConfigError('PIR_DEFAULT_STORE', `names store "${wantedDefault}", but PIR_STORES is unset (the one store is "${SINGLE_STORE_ID}")`);
    }
    return { stores: null, defaultStore: SINGLE_STORE_ID };
  }
  const stores: StoreSpec[] = [];
  for (const entry of raw.split(',').map((e) => e.trim()).filter(Boolean)) {
    const eq = entry.indexOf('=');
    const id = eq > 0 ? entry.slice(0, eq).trim() : '';
    const spec = eq > 0 ? entry.slice(eq + 1).trim() : '';
    if (!STORE_ID.test(id) || id.startsWith('os_glance_')) {
      throw new StoreConfigError('PIR_STORES', `"${entry}": a store is <id>=fs:<dir> or <id>=s3[:<prefix>/], the id lower-case letters, digits, '_' and '-' (not os_glance_*)`);
    }
    if (stores.some((s) => s.id === id)) throw new StoreConfigError('PIR_STORES', `store "${id}" is listed twice`);
    const colon = spec.indexOf(':');
    const kind = colon < 0 ? spec : spec.slice(0, colon);
    const arg = colon < 0 ? '' : spec.slice(colon + 1);
    if (kind === 'fs') {
      if (!arg || !isAbsolute(arg)) throw new StoreConfigError('PIR_STORES', `store "${id}": fs needs an absolute directory (fs:/var/lib/pir/${id})`);
      stores.push({ id, kind: 'fs', dir: resolve(arg) });
    } else if (kind === 's3') {
      if (s3Prefix === null) throw new StoreConfigError('PIR_STORES', `store "${id}" is on S3: set PIR_S3_ENDPOINT and the other PIR_S3_* settings`);
      const prefix = arg || `${s3Prefix}${id}/`;
      if (!PREFIX.test(prefix) || prefix.split('/').some((p) => /^\.+$/.test(p))) {
        throw new StoreConfigError('PIR_STORES', `store "${id}": the prefix "${arg}" must be path segments of letters, digits, '.', '_', '-' ending in '/'`);
      }
      stores.push({ id, kind: 's3', prefix });
    } else {
      throw new StoreConfigError('PIR_STORES', `store "${id}": unknown kind "${kind}" (fs or s3)`);
    }
  }
  if (stores.length === 0) throw new StoreConfigError('PIR_STORES', 'lists no store');
  overlapping(stores);
  const defaultStore = wantedDefault || stores[0].id;
  if (!stores.some((s) => s.id === defaultStore)) {
    throw new StoreConfigError('PIR_DEFAULT_STORE', `"${defaultStore}" is not one of PIR_STORES (${stores.map((s) => s.id).join(', ')})`);
  }
  return { stores, defaultStore };
}

/** Two stores over the same bytes would delete each other's copies. */
function overlapping(stores: StoreSpec[]): void {
  const pair = overlappingPair(stores.map((s) => (s.kind === 'fs' ? `fs:${s.dir}/` : `s3:${s.prefix}`)));
  if (pair) throw new StoreConfigError('PIR_STORES', `stores "${stores[pair[0]].id}" and "${stores[pair[1]].id}" overlap (one lies inside the other)`);
}

/**
 * The first two places (each ending in '/') of which one is or lies inside the other, as their
 * indexes (the outer first), or null: PIR_STORES as written, and the directories where they lead.
 */
export function overlappingPair(places: readonly string[]): [number, number] | null {
  for (let i = 0; i < places.length; i++) {
    for (let j = 0; j < places.length; j++) {
      if (i !== j && places[j].startsWith(places[i])) return [i, j];
    }
  }
  return null;
}
