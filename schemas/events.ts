/** The image events PIR publishes, one topic keyed by image id. Version each payload. */
import type { StageName } from './image.js';

export const EVENT_VERSION = 1;

export interface EventPayloads {
  'image.created': { name: string | null; disk_format: string | null; container_format: string | null };
  'image.upload.started': { run: number };
  'image.staged': { run: number; size: number; method: 'upload' | 'glance-direct' | 'web-download' | 'glance-download' | 'location' };
  'image.import.started': { run: number; method: 'upload' | 'glance-direct' | 'web-download' | 'glance-download' | 'location'; first_stage: StageName };
  'image.stage.started': { run: number; stage: StageName; attempt: number };
  'image.stage.completed': { run: number; stage: StageName; duration_ms: number };
  'image.stage.failed': { run: number; stage: StageName; code: string; message: string; retryable: boolean; attempt: number };
  'image.active': { run: number; size: number; virtual_size: number | null; checksum: string; os_hash_algo: string; os_hash_value: string };
  'image.killed': { run: number | null; stage: string; code: string; message: string };
  'image.upload.aborted': { reason: string };
  /** `owner`: the project whose quota the image counted against (the document may be purged by the time a consumer reads it). */
  'image.deleted': { owner?: string | null };
  /** Metadata changed (PATCH, tags, visibility): the names of the fields and properties that changed. */
  'image.updated': { changes: string[] };
  'image.deactivated': Record<string, never>;
  'image.reactivated': Record<string, never>;
  'image.member.created': { member_id: string; status: 'pending' };
  'image.member.updated': { member_id: string; status: 'pending' | 'accepted' | 'rejected' };
  'image.member.deleted': { member_id: string };
}
export type EventType = keyof EventPayloads;

export interface PirEvent<T extends EventType = EventType> {
  id: string;
  type: T;
  version: number;
  image_id: string;
  occurred_at: string;
  data: EventPayloads[T];
  traceparent?: string;
}

export function isPirEvent(value: unknown): value is PirEvent {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.id === 'string' && typeof v.type === 'string' && typeof v.image_id === 'string'
    && typeof v.version === 'number' && typeof v.data === 'object' && v.data !== null;
}
