/**
 * Who may receive one image event (webhook fan-out, GET /v2/events), by the webhooks' visibility
 * rule (core/webhooks/visibility.ts) with the galleries shared with each project: a project's
 * gallery grants are loaded only when the image sits in a gallery and nothing else lets the
 * project see it, and at most once per event, so an event on an image outside any gallery costs
 * no lookup. Grants are read when the event is handled: a project removed from the gallery, or
 * an image moved out of it, is no longer told.
 */
import type { Caller } from './caller.js';
import type { GalleryGrant } from './ports.js';
import { canSeeImage, galleryMayGrant } from './webhooks/visibility.js';
import type { ImageDoc } from '../schemas/image.js';

/** The galleries shared with a project (core/catalog.ts `grants`). */
export type GrantsOf = (projectId: string) => Promise<GalleryGrant[]>;

export class EventAudience {
  private readonly loaded = new Map<string, Promise<GalleryGrant[]>>();

  /** `doc`: the image as it is now (null once purged); without `grantsOf`, galleries grant nothing. */
  constructor(readonly doc: ImageDoc | null, private readonly grantsOf?: GrantsOf) {}

  /** The caller's gallery grants when they matter for this image, else none. */
  async grantsFor(caller: Caller): Promise<GalleryGrant[]> {
    if (!this.doc || !this.grantsOf || !galleryMayGrant(caller, this.doc)) return [];
    let grants = this.loaded.get(caller.project_id);
    if (!grants) this.loaded.set(caller.project_id, (grants = this.grantsOf(caller.project_id)));
    return grants;
  }

  /** Whether the caller may see the image now (false once purged: callers decide about deleted images). */
  async canSee(caller: Caller): Promise<boolean> {
    if (!this.doc) return false;
    return canSeeImage(caller, this.doc, await this.grantsFor(caller));
  }
}
