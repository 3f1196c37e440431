/** Plain words for a pipeline's refusal or fault, from PIR's own error catalog (bundled, not fetched). */
import { errorSpec, type Remedy } from '../../core/error-catalog.js';

export interface Explanation { what: string; meaning: string | null; todo: string }

const STAGE_WORDS: Record<string, string> = {
  unpack: 'while unpacking the upload', inspect: 'while inspecting the disk image', checksum: 'while checking its checksums',
  promote: 'while storing it', import: 'while downloading it from the URL',
};

const KILLED = 'This image stays killed; delete it.';

/** What to do, by the catalog's remedy for the failure's code (core/error-catalog.ts). */
const TODO: Record<Remedy, string> = {
  file: 'The file itself is the problem: fix or convert it (qemu-img check / qemu-img convert, or re-export it without backing files or external parts), '
    + `or declare the disk_format it really has, then create a new image and upload again. ${KILLED}`,
  source: 'The URL or location could not be read as PIR needs it (the message above says how): check that it is right and that its server answers and serves the file, '
    + `then create a new image and import or register it again (retrying later may be enough if the server was down). ${KILLED}`,
  resend: 'The data did not arrive as it was sent (corrupted on the way), or the checksum given with it is not the file\'s: check the file\'s checksum, '
    + `then create a new image and upload the file again. ${KILLED}`,
};
const TODO_REFUSAL = `PIR refused the image for the reason above: fix what it names, then create a new image and try again. ${KILLED}`;
const TODO_FAULT = 'PIR failed on its side after retrying. Delete this image and try again (upload or import anew); if it happens again, give your operator the image id.';

/** The advice for a failure's code: the catalog's remedy, else by its class (a refusal: fix what the message names; a fault: retry, tell the operator). */
export function adviceFor(code: string): string {
  const spec = errorSpec(code);
  if (spec?.remedy) return TODO[spec.remedy];
  return spec?.class === 'fault' ? TODO_FAULT : TODO_REFUSAL;
}

export function explainFailure(failure: { stage: string; code: string; message: string }): Explanation {
  const spec = errorSpec(failure.code);
  const where = STAGE_WORDS[failure.stage] ?? `at the ${failure.stage} stage`;
  const refusal = spec?.class !== 'fault';
  return {
    what: `${refusal ? 'Refused' : 'Failed'} ${where}: ${failure.message}`,
    meaning: spec ? `${spec.meaning.replace(/^\(info\) /, '')} (${failure.code})` : failure.code,
    todo: adviceFor(failure.code),
  };
}

export const STAGE_LABELS: Record<string, string> = { unpack: 'Unpack', inspect: 'Inspect', checksum: 'Checksum', promote: 'Promote', import: 'Import' };
