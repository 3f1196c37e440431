/** Plain words for a pipeline's refusal or fault, from PIR's own error catalog (bundled, not fetched). */
import { errorSpec } from '../../core/error-catalog';

export interface Explanation { what: string; meaning: string | null; todo: string }

const STAGE_WORDS: Record<string, string> = {
  unpack: 'while unpacking the upload', inspect: 'while inspecting the disk image', checksum: 'while checking its checksums',
  promote: 'while storing it', import: 'while downloading it from the URL',
};

export function explainFailure(failure: { stage: string; code: string; message: string }): Explanation {
  const spec = errorSpec(failure.code);
  const where = STAGE_WORDS[failure.stage] ?? `at the ${failure.stage} stage`;
  const refusal = spec?.class !== 'fault';
  return {
    what: `${refusal ? 'Refused' : 'Failed'} ${where}: ${failure.message}`,
    meaning: spec ? `${spec.meaning.replace(/^\(info\) /, '')} (${failure.code})` : failure.code,
    todo: refusal
      ? 'The file itself is the problem: fix or convert it (qemu-img check / qemu-img convert, or re-export it without backing files or external parts), then create a new image and upload again. This image stays killed; delete it.'
      : 'PIR failed on its side after retrying. Delete this image and upload again; if it happens again, give your operator the image id.',
  };
}

export const STAGE_LABELS: Record<string, string> = { unpack: 'Unpack', inspect: 'Inspect', checksum: 'Checksum', promote: 'Promote', import: 'Import' };
