/** Unpack: turn the uploaded artifact into the disk image to store (decompress, extract from OVA). */
import { randomBytes } from 'node:crypto';
import { keyOf, stagingKey } from '../../core/blob-keys.js';
import { isExternalKey } from '../../core/external-location.js';
import { RefusedError, TransientError } from '../../core/errors.js';
import { BlobNotFoundError, type BlobStore } from '../../core/ports.js';
import { addDetectedProperties, DETECTED_PREFIX } from '../../core/image-entity.js';
import type { StageWork } from '../stage-runner.js';
import { unpackFrom, UnpackRefusedError, type UnpackLimits, type UnpackSink, type UnpackSource } from '../unpack/unpack.js';

export function unpackStage(blobs: BlobStore, limits: UnpackLimits): StageWork {
  return async (doc, ctx) => {
    const staged = doc.staging;
    if (!staged) throw new TransientError('staging_missing', `Image ${doc.id} has no staged data to unpack.`);
    const run = doc.pipeline!.run;
    const inputKey = keyOf(staged);
    // This attempt's own key: another attempt of the same run (this one's job taken over after its
    // worker froze, or the other way round) may be writing, recording or discarding its own.
    const outputKey = stagingKey(doc.id, run, 'unpacked', randomBytes(6).toString('hex'));
    // The run's reader (inspect reads the same disk next) gives the size and the head.
    const reader = await ctx.readers.open(inputKey).catch((error: unknown) => {
      if (error instanceof BlobNotFoundError) throw new TransientError('staging_missing', `Image ${doc.id}'s staged data is gone.`);
      throw error;
    });
    const source: UnpackSource = {
      size: reader.size,
      // A bounded range read: an upload stored as is (most are) is never read here beyond its head.
      head: (bytes) => reader.read(0, bytes),
      stream: () => blobs.read(inputKey),
      localFile: () => blobs.localFile(inputKey),
    };
    // Registered bytes are served from where they are, as they are: an archive or compressed
    // file there would need its unpacked disk copied into PIR's store, so it is refused instead.
    const notADisk = () => Promise.reject(new RefusedError('location_not_a_disk', 'The bytes at the location are compressed or an archive; PIR serves registered bytes as they are and does not copy them. Register the disk image itself, or upload the archive instead.'));
    const sink: UnpackSink = isExternalKey(inputKey) ? { write: notADisk, discard: notADisk } : {
      write: (data, o) => blobs.write(outputKey, data, o),
      discard: () => blobs.delete(outputKey),
    };
    try {
      const result = await unpackFrom(source, sink, { containerFormat: doc.container_format, limits });
      return (draft) => {
        draft.pipeline!.unpacked = result.output ? { key: outputKey, ...result.output } : { key: inputKey, size: staged.size, md5: staged.md5, sha512: staged.sha512 };
        draft.pipeline!.unpack = { codec: result.codec, container: result.container, findings: result.findings };
        if (result.output) {
          // The stored disk differs from the uploaded artifact: keep the artifact's digest too.
          draft.properties.pir_uploaded_sha512 = staged.sha512;
          draft.properties.pir_uploaded_codec = result.codec;
        }
        for (const [key, value] of Object.entries(result.properties)) {
          if (!(key in draft.properties)) draft.properties[key] = value;
        }
        // The OVF descriptor's facts, also under the pir_detected_ prefix every detected fact uses.
        addDetectedProperties(draft, Object.fromEntries(Object.entries(result.properties).map(([k, v]) => [`${DETECTED_PREFIX}${k}`, v])));
      };
    } catch (error) {
      if (error instanceof UnpackRefusedError) throw new RefusedError(error.code, error.message);
      throw error;
    }
  };
}
