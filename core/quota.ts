/**
 * Quotas per project, with Glance's unified-limit names. Unlike Glance's (checked against a
 * count taken before the write, so N concurrent uploads can all pass), PIR's are reservations:
 * every image holds amounts in a per-project ledger (the QuotaStore port), and a hold that would
 * take a resource over its limit is refused atomically, so concurrent requests cannot overshoot.
 *
 * What an image holds (key = image id, and `<id>/flight` while bytes arrive or import):
 * - `<id>`: image_count_total 1 from create until deleted or killed, plus image_size_total =
 *   its size once active;
 * - `<id>/flight`: image_count_uploading 1 and image_stage_total = image_size_total = the bytes
 *   received so far (or announced), from upload start until the image settles (active, killed,
 *   deleted, or the upload aborted).
 * Holds are taken synchronously by the request that needs them; they are given back by
 * `settle`, run on the image's settling events (durable, at least once) and right away by the
 * API where it can. Settling is idempotent: it sets the holds from the image's current state.
 */
import type { ImageDoc } from '../schemas/image.js';
import { PirError } from './errors.js';

export const QUOTA_RESOURCES = ['image_size_total', 'image_stage_total', 'image_count_total', 'image_count_uploading'] as const;
export type QuotaResource = (typeof QUOTA_RESOURCES)[number];
/** Amounts held: counts, and bytes for the two sizes. */
export type Amounts = Partial<Record<QuotaResource, number>>;
/** Limits as configured: counts, and MiB for the two sizes (as Glance); -1 = unlimited. */
export type Limits = Record<QuotaResource, number>;

export interface QuotaConfig {
  default: Limits;
  projects: Record<string, Partial<Limits>>;
}

export const UNLIMITED: Limits = { image_size_total: -1, image_stage_total: -1, image_count_total: -1, image_count_uploading: -1 };

const MiB = 1024 * 1024;
const SIZE_RESOURCES = new Set<QuotaResource>(['image_size_total', 'image_stage_total']);

export interface Holding {
  key: string;
  amounts: Amounts;
  /** When it was last set (ISO). */
  at: string;
}

export interface QuotaRefusal {
  resource: QuotaResource;
  /** In the store's units (bytes for sizes). */
  limit: number;
  usage: number;
  delta: number;
}

// ---------------------------------------------------------------- the port

export interface QuotaStore {
  /**
   * Atomically sets the holding `key` of `project` to `amounts`, unless a resource whose
   * project total grows would then exceed `limits[resource]` (store units; absent or -1 = no
   * limit). Returns the refusal (and changes nothing), or null when set.
   */
  hold(project: string, key: string, amounts: Amounts, limits: Amounts, at: string): Promise<QuotaRefusal | null>;
  /**
   * Atomically removes holdings; one given `ifSetBefore` is removed only if it was last set
   * before that instant (so a hold taken after the settling write is kept).
   */
  release(project: string, releases: { key: string; ifSetBefore?: string }[]): Promise<void>;
  holdings(project: string): Promise<Holding[]>;
  close(): Promise<void>;
}

/** Sums holdings, and tells whether `amounts` at `key` fits `limits`: the check both adapters share. */
export function checkHold(current: Holding[], key: string, amounts: Amounts, limits: Amounts): QuotaRefusal | null {
  for (const resource of QUOTA_RESOURCES) {
    const limit = limits[resource];
    if (limit === undefined || limit < 0) continue;
    let others = 0;
    let before = 0;
    for (const h of current) {
      if (h.key === key) before = h.amounts[resource] ?? 0;
      else others += h.amounts[resource] ?? 0;
    }
    const after = amounts[resource] ?? 0;
    if (after > before && others + after > limit) return { resource, limit, usage: others + before, delta: after - before };
  }
  return null;
}

// ---------------------------------------------------------------- the domain side

export class Quotas {
  constructor(
    /** Null when quotas are off (PIR_QUOTAS unset): nothing is held or checked. */
    private readonly store: QuotaStore | null,
    private readonly config: QuotaConfig,
  ) {}

  get enabled(): boolean {
    return this.store !== null;
  }

  limitsFor(project: string): Limits {
    return { ...this.config.default, ...this.config.projects[project] };
  }

  /** POST /v2/images: one more image for the project, or 413. */
  async reserveImage(project: string | null, imageId: string): Promise<void> {
    if (!this.store || project === null) return;
    await this.holdOrRefuse(project, imageId, { image_count_total: 1 });
  }

  /** The image was not created after all. */
  async cancelImage(project: string | null, imageId: string): Promise<void> {
    if (!this.store || project === null) return;
    await this.store.release(project, [{ key: imageId }]);
  }

  /**
   * Bytes are about to arrive (upload, stage, web-download) or more arrived than held: the
   * image holds one upload slot and `bytes` of staging and of total size, or 413.
   */
  async reserveFlight(project: string | null, imageId: string, bytes: number): Promise<void> {
    if (!this.store || project === null) return;
    await this.holdOrRefuse(project, `${imageId}/flight`, { image_count_uploading: 1, image_stage_total: bytes, image_size_total: bytes });
  }

  /** How many more bytes the image could take in flight right now (for a last, exact try). */
  async flightRoom(project: string | null, imageId: string): Promise<number> {
    if (!this.store || project === null) return Number.MAX_SAFE_INTEGER;
    const limits = this.storeLimits(project);
    const holdings = await this.store.holdings(project);
    const key = `${imageId}/flight`;
    let room = Number.MAX_SAFE_INTEGER;
    for (const resource of ['image_stage_total', 'image_size_total'] as const) {
      const limit = limits[resource];
      if (limit === undefined || limit < 0) continue;
      const others = holdings.filter((h) => h.key !== key).reduce((sum, h) => sum + (h.amounts[resource] ?? 0), 0);
      room = Math.min(room, limit - others);
    }
    return Math.max(0, room);
  }

  /**
   * Sets the image's holds from its current state; idempotent, safe to run any number of times
   * in any process. `read` returns the image as it is now (null when gone).
   */
  async settle(imageId: string, read: () => Promise<ImageDoc | null>): Promise<void> {
    if (!this.store) return;
    const doc = await read();
    if (!doc || doc.owner === null) return; // a purged image's holds go when its deleted event settles (below) or never existed
    if (isGone(doc)) {
      await this.store.release(doc.owner, [{ key: imageId }, { key: `${imageId}/flight` }]);
      return;
    }
    if (isInFlight(doc)) return;
    await this.store.hold(doc.owner, imageId, { image_count_total: 1, image_size_total: doc.size ?? 0 }, {}, new Date().toISOString());
    await this.store.release(doc.owner, [{ key: `${imageId}/flight`, ifSetBefore: doc.updated_at }]);
    // If the image was deleted or killed while we wrote, that change's own settle may have run
    // before our write: look again, and give everything back if so.
    const now = await read();
    if (!now || isGone(now)) await this.store.release(doc.owner, [{ key: imageId }, { key: `${imageId}/flight` }]);
  }

  /** Gives back everything an image held, when only its project is known (it is already purged). */
  async releaseAll(project: string | null, imageId: string): Promise<void> {
    if (!this.store || project === null) return;
    await this.store.release(project, [{ key: imageId }, { key: `${imageId}/flight` }]);
  }

  /** Glance's GET /v2/info/usage body for a project: sizes in MiB. `{}` when quotas are off, as Glance without unified limits. */
  async usage(project: string): Promise<Record<string, { limit: number; usage: number }>> {
    if (!this.store) return {};
    const holdings = await this.store.holdings(project);
    const limits = this.limitsFor(project);
    const result: Record<string, { limit: number; usage: number }> = {};
    for (const resource of QUOTA_RESOURCES) {
      const total = holdings.reduce((sum, h) => sum + (h.amounts[resource] ?? 0), 0);
      result[resource] = { limit: limits[resource], usage: SIZE_RESOURCES.has(resource) ? Math.floor(total / MiB) : total };
    }
    return result;
  }

  private storeLimits(project: string): Amounts {
    const limits = this.limitsFor(project);
    const out: Amounts = {};
    for (const resource of QUOTA_RESOURCES) {
      const limit = limits[resource];
      out[resource] = limit < 0 ? -1 : SIZE_RESOURCES.has(resource) ? limit * MiB : limit;
    }
    return out;
  }

  private async holdOrRefuse(project: string, key: string, amounts: Amounts): Promise<void> {
    const refusal = await this.store!.hold(project, key, amounts, this.storeLimits(project), new Date().toISOString());
    if (refusal) throw quotaExceeded(project, refusal);
  }
}

function isGone(doc: ImageDoc): boolean {
  return doc.status === 'deleted' || doc.status === 'killed' || doc.status === 'pending_delete';
}

function isInFlight(doc: ImageDoc): boolean {
  return doc.status === 'saving' || doc.status === 'uploading' || doc.status === 'importing';
}

/** 413 in PIR's error shape, worded as Glance's (oslo.limit) quota message, sizes in MiB. */
export function quotaExceeded(project: string, refusal: QuotaRefusal): PirError {
  const unit = (n: number) => (SIZE_RESOURCES.has(refusal.resource) ? Math.ceil(n / MiB) : n);
  return new PirError('too_large', 'quota_exceeded',
    `Project ${project} is over a limit for [Resource ${refusal.resource} is over limit of ${unit(refusal.limit)} due to current usage ${unit(refusal.usage)} and delta ${unit(refusal.delta)}]. `
    + 'Delete images the project no longer needs, wait for uploads in progress to finish, or ask the operator to raise the quota (PIR_QUOTAS).');
}

/** Parses the quota configuration (PIR_QUOTAS): `{"default": {...}, "projects": {"<id>": {...}}}`. Throws an Error naming the problem. */
export function parseQuotaConfig(text: string): QuotaConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new Error(`not JSON (${(error as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error('must be an object {"default": {...}, "projects": {...}}');
  const { default: defaults, projects, ...extra } = raw as Record<string, unknown>;
  if (Object.keys(extra).length > 0) throw new Error(`unknown key '${Object.keys(extra)[0]}' (only "default" and "projects")`);
  const config: QuotaConfig = { default: { ...UNLIMITED, ...limitsOf(defaults ?? {}, 'default') }, projects: {} };
  if (projects !== undefined) {
    if (typeof projects !== 'object' || projects === null || Array.isArray(projects)) throw new Error('"projects" must be an object of project id → limits');
    for (const [id, limits] of Object.entries(projects)) config.projects[id] = limitsOf(limits, `projects.${id}`);
  }
  return config;
}

function limitsOf(value: unknown, where: string): Partial<Limits> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${where} must be an object of limits`);
  const out: Partial<Limits> = {};
  for (const [name, limit] of Object.entries(value)) {
    if (!(QUOTA_RESOURCES as readonly string[]).includes(name)) throw new Error(`${where}: unknown limit '${name}' (use ${QUOTA_RESOURCES.join(', ')})`);
    if (!Number.isSafeInteger(limit) || (limit as number) < -1) throw new Error(`${where}.${name} must be a whole number ≥ 0, or -1 for unlimited`);
    out[name as QuotaResource] = limit as number;
  }
  return out;
}
