/**
 * Checksum: the digests of the bytes that will be stored. They were computed while the bytes
 * streamed (upload or unpack), so this stage only verifies what the client promised and records them.
 */
import { RefusedError, TransientError } from '../../core/errors.js';
import type { StageWork } from '../stage-runner.js';

export function checksumStage(): StageWork {
  return async (doc) => {
    const disk = doc.pipeline!.unpacked;
    const uploaded = doc.staging;
    if (!disk || !uploaded) throw new TransientError('unpacked_missing', `Image ${doc.id} has no data to checksum.`);
    // Content-MD5 describes the bytes the client sent; os_hash_value at create describes the stored image.
    const { md5_from: md5From, sha512_from: sha512From } = doc.expected;
    if (doc.expected.md5 && doc.expected.md5 !== uploaded.md5) {
      throw new RefusedError('checksum_mismatch', `The uploaded data has md5 ${uploaded.md5}, but ${md5From ?? "the request's Content-MD5"} said ${doc.expected.md5}. The data was corrupted on the way; upload it again, to a new image (a refused image takes no more data).`);
    }
    if (doc.expected.sha512 && doc.expected.sha512 !== disk.sha512 && doc.expected.sha512 !== uploaded.sha512) {
      // A digest sent with the upload describes the bytes sent; os_hash_value at create, the image.
      throw new RefusedError('checksum_mismatch', sha512From
        ? `The uploaded data has sha512 ${uploaded.sha512}, but ${sha512From} said ${doc.expected.sha512}. The data was corrupted on the way, or the digest is not this file's; upload it again, to a new image (a refused image takes no more data).`
        : `The image's sha512 is ${disk.sha512}, but os_hash_value given at create was ${doc.expected.sha512}. Check that you uploaded the intended file.`);
    }
    return (draft) => {
      draft.size = disk.size;
      draft.checksum = disk.md5;
      draft.os_hash_algo = 'sha512';
      draft.os_hash_value = disk.sha512;
    };
  };
}
