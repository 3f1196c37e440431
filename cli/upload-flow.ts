/** Sending an image's bytes and seeing it through: direct upload or stage + import, then the checks. */
import { basename } from 'node:path';
import { ChecksumMismatchError, type Image, type PirClient, type SentFile } from '../client/index.js';
import { followImage } from './follow.js';
import { describeError } from './exit-codes.js';
import { endOnInterrupt, noteOnInterrupt } from './interrupt.js';
import { createProgress, summary } from './progress.js';

/** Uploads (direct or staged), waits as asked, and checks the digests sent against PIR's. */
export async function uploadAndSettle(client: PirClient, id: string, file: string, size: number,
  o: { md5?: string; wait?: boolean; import?: boolean; resumable?: boolean; timeoutMs?: number; quiet?: boolean; onProgress?: (sent: number) => void }): Promise<Image> {
  const progress = o.quiet ? null : createProgress({ label: `uploading ${basename(file)}`, total: size });
  const t0 = performance.now();
  let sentAt = 0;
  const onProgress = (sent: number) => {
    progress?.update(sent);
    o.onProgress?.(sent);
    if (sent === size) sentAt = performance.now();
  };
  let sent: SentFile;
  // A tus upload holds its staged bytes, a quota slot and the image `saving` until it expires
  // (PIR_TUS_EXPIRY_SECONDS, a day): a signal, or a failure, ends it (the image is queued again).
  let upload: string | null = null;
  let ended: true | string | null = null;
  const stopUpload = new AbortController();
  const endUpload = async () => {
    stopUpload.abort();
    if (!upload) return;
    try {
      await client.terminateUpload(upload);
      ended = true;
    } catch (error) {
      ended = describeError(error).message;
    }
  };
  const forgetEnding = o.resumable ? endOnInterrupt(endUpload) : () => {};
  // Cut before the last byte, the image has no data: say so, and what to do with it.
  const forgetNote = noteOnInterrupt(() => {
    const left = !upload ? 'without its data (queued, or saving until PIR notices the cut)'
      : ended === true ? 'queued without its data (its upload was ended: PIR dropped the bytes)'
        : `saving: ending its upload failed (${ended ?? 'no answer in time'}), so PIR keeps the bytes until the upload expires (PIR_TUS_EXPIRY_SECONDS)`;
    return `image ${id} was left ${left}; delete it with pir image delete ${id}, or create the image again.`;
  });
  try {
    if (o.resumable) {
      const result = await client.resumableUpload(id, file, {
        onProgress,
        onCreated: (location) => { upload = location; },
        signal: stopUpload.signal,
        onRetry: (error, offset, attempt) => {
          if (o.quiet) return;
          const where = offset === null ? 'PIR did not say how far it got, asking again' : `resuming at byte ${offset}`;
          process.stderr.write(`\nconnection lost (${error.message}); ${where} (attempt ${attempt})\n`);
        },
      });
      sent = { response: { status: 204, headers: {}, body: null }, sent: result.size, size: result.size, digests: result.digests };
    } else if (o.import) {
      sent = await client.stageFile(id, file, { md5: o.md5, onProgress });
      await client.importImage(id);
    } else {
      sent = await client.uploadFile(id, file, { md5: o.md5, async: o.wait, onProgress });
    }
  } catch (error) {
    progress?.stop();
    // The upload is given up: its bytes would only wait for the expiry.
    if (upload && !stopUpload.signal.aborted) await endUpload();
    throw error;
  } finally {
    forgetEnding();
    forgetNote();
  }
  const digests = sent.digests;
  progress?.finish(`sent ${summary(size, ((sentAt || performance.now()) - t0) / 1000)}${digests ? `; md5 ${digests.md5}, sha512 ${digests.sha512.slice(0, 16)}…` : ''}`);
  // A tus upload ends when the bytes are in, and a PUT answered 202 when the server stopped
  // waiting for its pipeline: the pipeline is still to come, so wait for it.
  const image = o.wait ? await followImage(client, id, { timeoutMs: o.timeoutMs, show: !o.quiet })
    : o.resumable || sent.response.status === 202 ? await client.waitForImage(id, { timeoutMs: o.timeoutMs }) : await client.getImage(id);
  if (image.status === 'active' && digests) await checkStoredDigests(client, image, digests, sent.size);
  return image;
}

/**
 * PIR's os_hash_value and checksum describe the stored disk. When it stored the bytes as sent
 * (same size: nothing was decompressed), they must equal the digests computed while sending.
 */
async function checkStoredDigests(client: PirClient, image: Image, digests: { md5: string; sha512: string }, size: number): Promise<void> {
  if (image.size !== size) return; // unpacked (e.g. gzip): PIR's digests are of the unpacked disk
  const bad = image.os_hash_value !== digests.sha512 ? ['sha512', digests.sha512, image.os_hash_value] as const
    : image.checksum !== digests.md5 ? ['md5', digests.md5, image.checksum] as const : null;
  if (!bad) return;
  await client.deleteImage(image.id).catch(() => {});
  throw new ChecksumMismatchError(bad[0], bad[1], bad[2] ?? '', `PIR stored different bytes than were sent (${bad[0]} sent ${bad[1]}, stored ${bad[2]}); image ${image.id} was deleted. Upload again.`);
}

