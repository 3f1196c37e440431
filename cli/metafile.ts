/**
 * Metafiles on the command line (kamaki's `image register`): reading one, merging it with the
 * command line (the command line wins), and re-registering an image from it (the metafile
 * replaces the image's metadata: properties and tags it does not name are removed, not merged).
 */
import { readFile } from 'node:fs/promises';
import { CatalogClient, type Image, type JsonPatchOp, type MetafileRecord, type PirClient } from '../client/index.js';
import { UsageError } from './exit-codes.js';

/** The image's metadata a registration asks for. */
export interface Registration {
  name: string;
  disk_format?: string;
  container_format?: string;
  visibility?: string;
  protected?: boolean;
  min_disk?: number;
  min_ram?: number;
  tags: string[];
  properties: Record<string, string>;
  /** A gallery path (or id) of the caller's project, or null for none. */
  gallery: string | null;
}

const GALLERY_PROPERTY = 'pir_gallery_id';
const FIELDS = ['disk_format', 'container_format', 'visibility'] as const;

/** Reads and checks a metafile (as `pir image metafile` writes it). */
export async function readMetafile(path: string): Promise<Partial<MetafileRecord>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new UsageError(`--metafile ${path}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}`);
  }
  let meta: unknown;
  try {
    meta = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`--metafile ${path} is not JSON (${(error as Error).message}); write one with: pir image metafile ID > ${path}`);
  }
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) throw new UsageError(`--metafile ${path}: a metafile is a JSON object (name, disk_format, container_format, visibility, tags, properties, gallery)`);
  const m = meta as Record<string, unknown>;
  const str = (k: string) => { if (m[k] !== undefined && m[k] !== null && typeof m[k] !== 'string') throw new UsageError(`--metafile ${path}: "${k}" must be a string`); };
  for (const k of ['name', 'disk_format', 'container_format', 'visibility', 'gallery']) str(k);
  if (m.tags !== undefined && (!Array.isArray(m.tags) || m.tags.some((t) => typeof t !== 'string'))) throw new UsageError(`--metafile ${path}: "tags" must be a list of strings`);
  if (m.properties !== undefined && (typeof m.properties !== 'object' || m.properties === null || Array.isArray(m.properties) || Object.values(m.properties).some((v) => typeof v !== 'string'))) {
    throw new UsageError(`--metafile ${path}: "properties" must be an object of strings`);
  }
  for (const k of ['min_disk', 'min_ram']) if (m[k] !== undefined && !Number.isInteger(m[k])) throw new UsageError(`--metafile ${path}: "${k}" must be a whole number`);
  if (m.protected !== undefined && typeof m.protected !== 'boolean') throw new UsageError(`--metafile ${path}: "protected" must be true or false`);
  return m as Partial<MetafileRecord>;
}

export interface CommandLine {
  name?: string;
  diskFormat?: string;
  containerFormat?: string;
  visibility?: string;
  tag: string[];
  properties: Record<string, string>;
  gallery?: string;
}

/** The metafile with the command line on top: each value given on the command line wins. */
export function mergeRegistration(meta: Partial<MetafileRecord>, cli: CommandLine): Registration {
  const name = cli.name ?? meta.name ?? undefined;
  if (!name) throw new UsageError('the image needs a name: give NAME, or a metafile with "name"');
  const props: Record<string, string> = {};
  for (const [k, v] of Object.entries(meta.properties ?? {})) if (!k.startsWith('pir_')) props[k] = v;
  return {
    name,
    ...(cli.diskFormat ?? meta.disk_format ? { disk_format: (cli.diskFormat ?? meta.disk_format)! } : {}),
    ...(cli.containerFormat ?? meta.container_format ? { container_format: (cli.containerFormat ?? meta.container_format)! } : {}),
    ...(cli.visibility ?? meta.visibility ? { visibility: (cli.visibility ?? meta.visibility)! } : {}),
    ...(meta.protected !== undefined ? { protected: meta.protected } : {}),
    ...(meta.min_disk !== undefined ? { min_disk: meta.min_disk } : {}),
    ...(meta.min_ram !== undefined ? { min_ram: meta.min_ram } : {}),
    tags: cli.tag.length ? cli.tag : [...(meta.tags ?? [])],
    properties: { ...props, ...cli.properties },
    gallery: cli.gallery ?? meta.gallery ?? null,
  };
}

const pointer = (key: string) => '/' + key.replace(/~/g, '~0').replace(/\//g, '~1');

/**
 * The one PATCH that makes `image` carry exactly the registration: fields it names are set,
 * user properties it does not name are removed, tags are replaced (override, not merge).
 */
export function registrationPatch(image: Image, reg: Registration, galleryId: string | null): JsonPatchOp[] {
  const current = image as unknown as Record<string, unknown>;
  const ops: JsonPatchOp[] = [];
  const set = (key: string, value: unknown) => {
    if (JSON.stringify(current[key]) === JSON.stringify(value)) return;
    ops.push({ op: key in current && current[key] !== null ? 'replace' : 'add', path: pointer(key), value });
  };
  set('name', reg.name);
  for (const k of FIELDS) if (reg[k] !== undefined) set(k, reg[k]);
  if (reg.protected !== undefined) set('protected', reg.protected);
  if (reg.min_disk !== undefined) set('min_disk', reg.min_disk);
  if (reg.min_ram !== undefined) set('min_ram', reg.min_ram);
  set('tags', reg.tags);
  for (const key of userProperties(image)) if (!(key in reg.properties)) ops.push({ op: 'remove', path: pointer(key) });
  for (const [k, v] of Object.entries(reg.properties)) set(k, v);
  const had = current[GALLERY_PROPERTY];
  if (galleryId !== null && had !== galleryId) ops.push({ op: 'add', path: pointer(GALLERY_PROPERTY), value: galleryId });
  if (galleryId === null && typeof had === 'string') ops.push({ op: 'remove', path: pointer(GALLERY_PROPERTY) });
  return ops;
}

/** Glance's view puts extra properties beside the base fields: these are the user's own. */
const BASE = new Set(['id', 'name', 'status', 'visibility', 'protected', 'os_hidden', 'owner', 'container_format', 'disk_format', 'min_disk', 'min_ram',
  'size', 'virtual_size', 'checksum', 'os_hash_algo', 'os_hash_value', 'tags', 'created_at', 'updated_at', 'self', 'file', 'schema', 'direct_url', 'locations', 'stores', 'members']);

export function userProperties(image: Image): string[] {
  return Object.keys(image).filter((k) => !BASE.has(k) && !k.startsWith('pir_') && !k.startsWith('os_glance'));
}

/**
 * The gallery id of a registration (its path or id, a gallery of the caller's project: images go
 * only into their owner's galleries, so a shared one is refused before anything is created), or null.
 */
export async function galleryIdOf(client: PirClient, gallery: string | null): Promise<string | null> {
  if (gallery === null || gallery === '') return null;
  return (await new CatalogClient(client).resolveGallery(gallery, { own: true })).id;
}
