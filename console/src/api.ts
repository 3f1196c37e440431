/**
 * The public API, as the console calls it: the token goes in the X-Auth-Token header only, and
 * errors come back as ApiError carrying PIR's error shape ({error: {code, message, error_code}}).
 */
export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

export type Image = Record<string, unknown> & {
  id: string; name: string | null; status: string; visibility: string; owner: string | null;
  disk_format: string | null; container_format: string | null; size: number | null; virtual_size: number | null;
  tags: string[]; created_at: string; updated_at: string; checksum: string | null; os_hash_algo: string | null; os_hash_value: string | null;
  protected: boolean;
  pir_stage?: string; pir_pipeline?: Pipeline; pir_failure?: { stage: string; code: string; message: string };
};
export interface StageProgress { status: string; attempts: number; started_at: string | null; ended_at: string | null; duration_ms: number | null }
export interface Pipeline { run: number; method: string; stage: string; started_at: string; deadline_at: string; stages: Record<string, StageProgress>; findings: { code: string; message?: string }[] }
export interface Member { member_id: string; image_id: string; status: string; created_at: string; updated_at: string }

let token = '';
let onUnauthorized: () => void = () => {};

export function setApiToken(t: string, unauthorized: () => void): void {
  token = t;
  onUnauthorized = unauthorized;
}
export const currentToken = () => token;

export async function api(path: string, init: RequestInit = {}, tokenOverride?: string): Promise<Response> {
  const headers = new Headers(init.headers);
  const t = tokenOverride ?? token;
  if (t) headers.set('X-Auth-Token', t);
  const response = await fetch(path, { ...init, headers, credentials: 'omit', cache: 'no-store' });
  if (!response.ok) {
    const body = await response.json().catch(() => null) as { error?: { message?: string; error_code?: string } } | null;
    const err = new ApiError(response.status, body?.error?.error_code ?? `http_${response.status}`, body?.error?.message ?? `HTTP ${response.status}`);
    if (response.status === 401 && !tokenOverride && t) onUnauthorized();
    throw err;
  }
  return response;
}

export async function getJson<T>(path: string, init?: RequestInit, tokenOverride?: string): Promise<T> {
  return await (await api(path, init, tokenOverride)).json() as T;
}

export async function sendJson<T>(method: string, path: string, body: unknown, contentType = 'application/json'): Promise<T | null> {
  const response = await api(path, { method, headers: { 'content-type': contentType }, body: JSON.stringify(body) });
  return response.status === 204 ? null : await response.json().catch(() => null) as T | null;
}

/** Glance's JSON Patch media type for PATCH /v2/images/{id}. */
export const patchImage = (id: string, ops: unknown[]) => sendJson<Image>('PATCH', `/v2/images/${encodeURIComponent(id)}`, ops, 'application/openstack-images-v2.1-json-patch');

/** Whether a route is absent from this PIR (a 404 from the router, not from a missing image). */
export const isNoRoute = (e: unknown) => e instanceof ApiError && e.status === 404 && e.code === 'no_route';
