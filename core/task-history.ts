/**
 * The tasks of an image's earlier imports. PIR derives an import's task from the image (its
 * pipeline run, or the failure of an import that never reached one), so a new run would make the
 * last one's task vanish; Glance keeps every import call's task until it expires. The write that
 * starts a new run (image-entity.ts) keeps the finished task as it stood, in that same write, so a
 * crash between the two cannot lose it.
 */
import type { ImageDoc } from '../schemas/image.js';
import { finishedImportTasks } from './task-views.js';

/** Earlier import tasks an image keeps (Glance keeps each for task_time_to_live): the newest. */
export const KEPT_EARLIER_TASKS = 20;

/** Keeps the image's finished import task (never a running one), once, before a new run replaces it. */
export function keepFinishedTasks(draft: ImageDoc): void {
  const kept = draft.earlier_tasks ?? [];
  const known = new Set(kept.map((t) => t.id));
  const added = finishedImportTasks(draft).filter((t) => !known.has(t.id));
  if (added.length === 0) return;
  draft.earlier_tasks = [...kept, ...added].slice(-KEPT_EARLIER_TASKS);
}
