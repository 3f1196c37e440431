/**
 * The shape of the MongoDB-wire store's list filter: FerretDB 1.24 hands only the filter's
 * top-level equalities to its backend's index (README "MongoDB, and FerretDB in the tests"), so
 * a search must put its selective terms there; what the filter matches is checked against real
 * servers by the manifest store contract (test/contract).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ListQuery } from '../../../core/ports.js';
import { PREFIX_TOKEN_MAX, wordStarts } from '../../../core/search.js';
import { listFilter } from '../../../infra/mongo/mongo-manifest-store.js';

function query(partial: Partial<ListQuery>): ListQuery {
  return { scope: { project_id: 'admin', admin: true }, visibility: 'all', memberStatus: 'accepted', where: {}, sort: [{ key: 'created_at', dir: 'desc' }], limit: 25, ...partial };
}

test('wordStarts: every start of every word up to PREFIX_TOKEN_MAX characters, once each, whole code points', () => {
  assert.deepEqual(wordStarts(['deb', 'de']), ['d', 'de', 'deb']);
  const long = 'virtualization'; // 14 characters
  assert.deepEqual(wordStarts([long]), Array.from({ length: PREFIX_TOKEN_MAX }, (_, i) => long.slice(0, i + 1)));
  assert.deepEqual(wordStarts(['a😀b']), ['a', 'a😀', 'a😀b']);
});

test('list filter: the longest exact word and the last word\'s start are top-level equalities; other words stay in $and', () => {
  const { filter } = listFilter(query({ search: { words: ['12', 'debian'], prefix: 'bookw' } }));
  const f = filter as Record<string, unknown>;
  assert.equal(f.pir_words, 'debian');
  assert.equal(f.pir_prefixes, 'bookw');
  assert.deepEqual(f.$and, [{ pir_words: '12' }]);
});

test('list filter: a last word longer than PREFIX_TOKEN_MAX matches its start by equality and the whole word by an anchored $regex', () => {
  const { filter } = listFilter(query({ search: { words: [], prefix: 'virtualization' } }));
  const f = filter as Record<string, unknown>;
  assert.equal(f.pir_prefixes, 'virtualizati');
  assert.deepEqual(f.$and, [{ pir_words: { $regex: '^virtualization' } }]);
});

test('list filter: single-valued filters become top-level equalities, the access rules stay in $and', () => {
  const { filter } = listFilter(query({
    scope: { project_id: 'p1', admin: false }, visibility: 'public', where: { status: ['active'], owner: 'p2', protected: false },
    tags: ['gpu', 'cuda'], properties: { os_distro: 'debian' }, search: { words: [], prefix: 'fedora' },
  }));
  const f = filter as Record<string, unknown>;
  assert.equal(f.pir_prefixes, 'fedora');
  assert.equal(f.visibility, 'public');
  assert.equal(f.status, 'active');
  assert.equal(f.owner, 'p2');
  assert.equal(f.protected, false);
  assert.equal(f.tags, 'gpu');
  assert.equal(f.pir_props, '["os_distro","debian"]');
  assert.ok((f.$and as object[]).some((c) => JSON.stringify(c) === '{"tags":"cuda"}'), 'the second tag stays in $and');
});

test('list filter: no clause at all is the empty filter; a lone $or stays under $and', () => {
  assert.deepEqual(listFilter(query({})).filter, {});
  const { filter } = listFilter(query({ scope: { project_id: 'p1', admin: false }, visibility: undefined }));
  assert.ok(Array.isArray((filter as Record<string, unknown>).$and));
});
