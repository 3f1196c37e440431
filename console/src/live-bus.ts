/** Fans the one event stream out to whichever views are showing (list, image page). */
import type { Image } from './api';

export type LiveListener = (type: string, image: Image) => void;

export class LiveBus {
  private listeners = new Set<LiveListener>();
  emit(type: string, image: Image): void {
    for (const fn of this.listeners) fn(type, image);
  }
  on(fn: LiveListener): () => void {
    this.listeners.add(fn);
    return () => { this.listeners.delete(fn); };
  }
}
