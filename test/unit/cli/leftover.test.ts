/**
 * What a failed create or register does with the image it made (cli/leftover.ts): deleted when
 * still queued (also once a cut upload is put back in queued), named when PIR cannot be asked,
 * left alone when refused (killed) or already gone.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NotFoundError, TransportError, type PirClient } from '../../../client/index.js';
import { describeError, EXIT } from '../../../cli/exit-codes.js';
import { discardUnfilled, filling } from '../../../cli/leftover.js';

/** A client whose image goes through `statuses` (one per GET; an Error is thrown), recording deletes. */
function stub(statuses: (string | Error)[]): PirClient & { deleted: string[] } {
  const deleted: string[] = [];
  return {
    deleted,
    async getImage(id: string) {
      const next = statuses.length > 1 ? statuses.shift()! : statuses[0]!;
      if (next instanceof Error) throw next;
      return { id, status: next };
    },
    async deleteImage(id: string) { deleted.push(id); },
  } as unknown as PirClient & { deleted: string[] };
}

describe('the image a failed command made', () => {
  it('is deleted while queued, also once PIR put a cut upload back in queued', async () => {
    for (const statuses of [['queued'], ['saving', 'queued']]) {
      const client = stub(statuses);
      assert.equal(await discardUnfilled(client, 'i'), 'deleted image i, which this command made: its data never got in');
      assert.deepEqual(client.deleted, ['i']);
    }
  });

  it('is left alone when refused (killed) or gone, and named with the delete command when PIR cannot say', async () => {
    for (const statuses of [['killed'], ['importing'], [new NotFoundError(404, 'not_found', 'gone', 'GET', '/', null)]]) {
      const client = stub(statuses);
      assert.equal(await discardUnfilled(client, 'i'), null);
      assert.deepEqual(client.deleted, []);
    }
    const down = stub([new TransportError('http://pir:9292', Object.assign(new Error('x'), { code: 'ECONNREFUSED' }))]);
    assert.match((await discardUnfilled(down, 'i'))!, /^image i may be left without its data \(PIR did not say: cannot reach http:\/\/pir:9292: ECONNREFUSED.*\); delete it with pir image delete i$/);
  });

  it('is said after the failure, whose exit code stays', async () => {
    const failure = new TransportError('http://pir:9292', Object.assign(new Error('x'), { code: 'EPIPE' }));
    const error = await filling(stub(['queued']), 'i', async () => { throw failure; }).catch((e: unknown) => e);
    const { code, message } = describeError(error);
    assert.equal(code, EXIT.failure);
    assert.match(message, /^the connection to http:\/\/pir:9292 broke \(EPIPE\); run the command again\npir: deleted image i, which this command made/);
  });
});
