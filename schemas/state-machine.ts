import type { ImageStatus } from './image.js';

/**
 * Allowed status changes. Glance's table, except that a failed import ends in `killed`
 * (terminal and explicit) instead of going back to `queued`.
 */
const TRANSITIONS: Record<ImageStatus, readonly ImageStatus[]> = {
  queued: ['saving', 'uploading', 'importing', 'active', 'killed', 'deleted'],
  saving: ['importing', 'active', 'killed', 'queued', 'deleted'],
  uploading: ['importing', 'queued', 'killed', 'deleted'],
  importing: ['active', 'killed', 'deleted'],
  active: ['deactivated', 'pending_delete', 'deleted'],
  deactivated: ['active', 'deleted'],
  pending_delete: ['deleted', 'active'],
  killed: ['deleted'],
  deleted: [],
};

export function canTransition(from: ImageStatus, to: ImageStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

export function allowedTargets(from: ImageStatus): readonly ImageStatus[] {
  return TRANSITIONS[from];
}
