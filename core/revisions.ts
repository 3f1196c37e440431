/**
 * Metadata revisions as pure rules: what "an image's metadata" is (the part a client changes:
 * attributes, tags, extra properties, members, gallery), the RFC 6902 JSON Patch between two
 * versions of it, and applying one. core/revision-service.ts records and serves them.
 */
import type { ImageDoc } from '../schemas/image.js';
import type { JsonPatchOp } from './catalog-ports.js';

export const METADATA_FIELDS = ['name', 'owner', 'disk_format', 'container_format', 'visibility', 'protected', 'os_hidden', 'min_disk', 'min_ram'] as const;

export interface ImageMetadata {
  name: string | null;
  owner: string | null;
  disk_format: string | null;
  container_format: string | null;
  visibility: string;
  protected: boolean;
  os_hidden: boolean;
  min_disk: number;
  min_ram: number;
  tags: string[];
  properties: Record<string, string>;
  members: { member_id: string; status: string }[];
}

export function metadataOf(doc: ImageDoc): ImageMetadata {
  return {
    name: doc.name,
    owner: doc.owner,
    disk_format: doc.disk_format,
    container_format: doc.container_format,
    visibility: doc.visibility,
    protected: doc.protected,
    os_hidden: doc.os_hidden,
    min_disk: doc.min_disk,
    min_ram: doc.min_ram,
    tags: [...doc.tags],
    properties: { ...doc.properties },
    members: (doc.members ?? []).map((m) => ({ member_id: m.member_id, status: m.status })).sort((a, b) => (a.member_id < b.member_id ? -1 : a.member_id > b.member_id ? 1 : 0)),
  };
}

/** RFC 6901: `~` → `~0`, `/` → `~1`. */
const pointer = (...segments: string[]) => segments.map((s) => '/' + s.replace(/~/g, '~0').replace(/\//g, '~1')).join('');
const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/**
 * The JSON Patch that turns `before` into `after` (before null: the whole metadata is added).
 * Properties change key by key; tags and members, small lists whose order is no meaning, are
 * replaced whole.
 */
export function diffMetadata(before: ImageMetadata | null, after: ImageMetadata): JsonPatchOp[] {
  if (before === null) return [{ op: 'add', path: '', value: after }];
  const ops: JsonPatchOp[] = [];
  for (const key of METADATA_FIELDS) {
    if (!same(before[key], after[key])) ops.push({ op: 'replace', path: pointer(key), value: after[key] });
  }
  if (!same(before.tags, after.tags)) ops.push({ op: 'replace', path: pointer('tags'), value: after.tags });
  for (const key of Object.keys(before.properties)) {
    if (!Object.hasOwn(after.properties, key)) ops.push({ op: 'remove', path: pointer('properties', key) });
  }
  for (const [key, value] of Object.entries(after.properties)) {
    if (!Object.hasOwn(before.properties, key)) ops.push({ op: 'add', path: pointer('properties', key), value });
    else if (before.properties[key] !== value) ops.push({ op: 'replace', path: pointer('properties', key), value });
  }
  if (!same(before.members, after.members)) ops.push({ op: 'replace', path: pointer('members'), value: after.members });
  return ops;
}
