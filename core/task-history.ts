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

/**
 * What a kept list of tasks may weigh in the image document (JSON bytes), whatever its count: a
 * task's input holds up to 8 KiB of its call's body, and every write of the image rewrites the
 * list, so twenty large inputs must not ride along (a failing import can be repeated at will).
 */
export const KEPT_TASKS_BYTES = 32 * 1024;

/** Keeps the image's finished import task (never a running one), once, before a new run replaces it. */
export function keepFinishedTasks(draft: ImageDoc): void {
  const kept = draft.earlier_tasks ?? [];
  const known = new Set(kept.map((t) => t.id));
  const added = finishedImportTasks(draft).filter((t) => !known.has(t.id));
  if (added.length === 0) return;
  draft.earlier_tasks = newestWithin([...kept, ...added], KEPT_EARLIER_TASKS);
}

/**
 * The newest of `tasks` (oldest first, as kept) up to `count` of them and KEPT_TASKS_BYTES of
 * JSON, in their order; those `mustKeep` names (a running task) stay whatever they weigh.
 */
export function newestWithin<T>(tasks: readonly T[], count: number, mustKeep: (task: T) => boolean = () => false): T[] {
  const chosen = new Set<T>();
  let bytes = 0;
  for (let i = tasks.length - 1; i >= 0; i--) {
    const task = tasks[i]!;
    const size = JSON.stringify(task).length;
    if (mustKeep(task) || (chosen.size < count && bytes + size <= KEPT_TASKS_BYTES)) {
      chosen.add(task);
      bytes += size;
    }
  }
  return tasks.filter((task) => chosen.has(task));
}
