/**
 * The image a failed `create` or `register` made. When its data never got in (it is still
 * queued), it is deleted: left, it would hold its name (registering again would find it) and a
 * quota slot, unexplained. Otherwise it is named, with the command that deletes it.
 */
import { NotFoundError, type PirClient } from '../client/index.js';
import { describeError, FailureWithNote } from './exit-codes.js';
import { signalled } from './interrupt.js';

/** An upload's statuses: PIR puts a cut one back in queued as soon as it notices the cut. */
const RECEIVING = new Set(['saving', 'uploading']);

/** Deletes image `id` if it is queued (no data); returns what to tell about it, or null when there is nothing to say. */
export async function discardUnfilled(client: PirClient, id: string): Promise<string | null> {
  let status: string;
  for (let tries = 1; ; tries++) {
    try {
      status = (await client.getImage(id)).status;
    } catch (error) {
      if (error instanceof NotFoundError) return null; // gone already (a checksum mismatch deletes it)
      return `image ${id} may be left without its data (PIR did not say: ${describeError(error).message}); delete it with pir image delete ${id}`;
    }
    if (!RECEIVING.has(status) || tries === 10) break;
    await new Promise((r) => setTimeout(r, 300));
  }
  if (RECEIVING.has(status)) return `image ${id} was left ${status} without its data; delete it with pir image delete ${id}`;
  if (status !== 'queued') return null; // killed (the refusal named it), importing, active
  try {
    await client.deleteImage(id);
    return `deleted image ${id}, which this command made: its data never got in`;
  } catch (error) {
    return `image ${id} was left queued without its data (deleting it failed: ${describeError(error).message}); delete it with pir image delete ${id}`;
  }
}

/** Runs what fills the image `id` the command just made; if it fails, the image is dealt with as above and the failure says so. */
export async function filling<T>(client: PirClient, id: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (signalled()) throw error; // the signal's notes say what was left
    const note = await discardUnfilled(client, id);
    throw note ? new FailureWithNote(error, note) : error;
  }
}
