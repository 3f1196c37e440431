/**
 * The console's "What to do" for a killed image (console/src/explain.ts) follows the failure:
 * the catalog's remedy (core/error-catalog.ts) for its code, else its class.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { adviceFor, explainFailure } from '../../../console/src/explain.js';
import { ERROR_CATALOG, PIPELINE_ERRORS } from '../../../core/error-catalog.js';
import { FINDING_CODES, VERDICT_CODES } from '../../../formats/codes.js';

const FILE = /fix or convert it \(qemu-img/;

describe('the console explains a failure', () => {
  it('tells to fix or convert the file only when its contents were refused', () => {
    for (const code of ['qcow2_backing_file', 'image_truncated', 'format_mismatch', 'vmdk_external_extent', 'expansion_ratio', 'corrupt_archive']) {
      assert.match(adviceFor(code), FILE, code);
    }
    const e = explainFailure({ stage: 'inspect', code: 'qcow2_backing_file', message: 'qcow2 names a backing file' });
    assert.match(e.what, /^Refused while inspecting/);
    assert.match(e.todo, FILE);
  });

  it('a failed web-download or location: check the URL and its server, retry; not the file', () => {
    for (const code of ['connection_failed', 'dns_failed', 'timeout', 'upstream_status', 'too_many_redirects', 'address_refused', 'location_no_ranges', 'location_unreadable']) {
      const todo = adviceFor(code);
      assert.doesNotMatch(todo, FILE, code);
      assert.match(todo, /URL/, code);
      assert.match(todo, /server/, code);
    }
    const e = explainFailure({ stage: 'import', code: 'connection_failed', message: 'connection reset' });
    assert.match(e.what, /^Refused while downloading it from the URL: connection reset/);
    assert.match(e.todo, /import or register it again/);
  });

  it('a checksum mismatch: corrupted on the way, upload again as a new image', () => {
    const todo = explainFailure({ stage: 'checksum', code: 'checksum_mismatch', message: 'md5 differs' }).todo;
    assert.doesNotMatch(todo, FILE);
    assert.match(todo, /corrupted on the way/);
    assert.match(todo, /create a new image and upload the file again/);
  });

  it("a fault is PIR's: retry, or give the operator the image id", () => {
    for (const code of ['internal_error', 'download_failed', 'staged_data_lost', 'store_copy_failed', 'deadline_exceeded']) {
      const e = explainFailure({ stage: 'promote', code, message: 'x' });
      assert.match(e.what, /^Failed /, code);
      assert.match(e.todo, /PIR failed on its side/, code);
      assert.match(e.todo, /operator/, code);
      assert.doesNotMatch(e.todo, FILE, code);
    }
  });

  it('another refusal (or an unknown code): fix what the message names, not the file', () => {
    for (const code of ['image_too_large', 'quota_exceeded', 'no_such_code']) {
      assert.doesNotMatch(adviceFor(code), FILE, code);
      assert.match(adviceFor(code), /fix what it names/, code);
    }
  });

  it("the catalog gives every inspector's code the file remedy, and every pipeline refusal a remedy", () => {
    for (const code of Object.keys({ ...FINDING_CODES, ...VERDICT_CODES })) assert.equal(ERROR_CATALOG[code]?.remedy, 'file', code);
    for (const [code, spec] of Object.entries(PIPELINE_ERRORS)) {
      if (spec.class === 'refusal') assert.ok((spec as { remedy?: string }).remedy, `${code} has no remedy`);
    }
  });
});
