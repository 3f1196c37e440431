/**
 * A claim (queued → saving or uploading, under a new run number) whose write failed after it was
 * sent may still have landed: the MongoDB-wire server can apply a write and lose the connection
 * before it answers. The request then failed (503), so nothing will ever run that upload, and
 * until the stale sweep gives it up (PIR_UPLOAD_STALL_SECONDS, 120 s) the client's retry would get
 * 409. The claim is released instead, in the background, as soon as the manifest answers again:
 * a compare-and-set on the claim itself (its run number and start time: a claim that never landed
 * leaves the run number free, and the client's retry takes the same one), so a claim that never
 * landed, or a newer one, is left alone.
 */
import { releaseClaim } from './image-entity.js';
import type { Manifest } from './manifest.js';
import type { ImageDoc } from '../schemas/image.js';

/** What identifies one claim: the upload record its write set. */
export type Claim = Pick<NonNullable<ImageDoc['upload']>, 'run' | 'started_at'>;

/** How long a release keeps trying; past it the stale sweep does the same. */
const LOST_CLAIM_RETRY_MS = 120_000;
const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 5000;

export interface LostClaimOptions {
  retryForMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

/** Whether the claim was found and released (false: it never landed, or something newer owns the image). */
export async function releaseLostClaim(manifest: Manifest, id: string, claim: Claim, options: LostClaimOptions = {}): Promise<boolean> {
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref()));
  const giveUpAt = Date.now() + (options.retryForMs ?? LOST_CLAIM_RETRY_MS);
  for (let delay = FIRST_RETRY_MS; ; delay = Math.min(delay * 2, MAX_RETRY_MS)) {
    await sleep(delay);
    try {
      const { changed } = await manifest.update(id, (draft) =>
        draft.upload?.run === claim.run && draft.upload.started_at === claim.started_at && !draft.staging ? releaseClaim(draft, 'the write that began this upload failed; the upload never ran') : null);
      return changed;
    } catch (error) {
      if ((error as { kind?: string }).kind === 'not_found' || Date.now() >= giveUpAt) return false;
    }
  }
}
