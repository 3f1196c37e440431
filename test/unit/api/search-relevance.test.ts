/**
 * sort=relevance through the API over more matches than a page, a tier or a scan batch: the
 * SQLite store's tiered ranking (with its driving sets, and forced to walk tier by tier) and
 * ImageService's scan for a store without rankedList give the same order, page after page by
 * marker, as core/search.ts `relevance` applied to the plain search's results (ties: the list's order).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteManifestStore } from '../../../infra/embedded/sqlite-manifest-store.js';
import type { ManifestStore } from '../../../core/ports.js';
import { parseSearch, relevance } from '../../../core/search.js';
import type { ImageDoc, Visibility } from '../../../schemas/image.js';
import { inProcessApp, type InProcessApp } from '../../support/in-process-app.js';
import { makeDoc } from '../../contract/helpers.js';

const MEMBER = { 'm-token': { project_id: 'p1', user_id: 'u1', roles: ['member', 'reader'] } };
const WORDS = ['alpha', 'beta', 'gamma'];

/** 1,500 images whose words sit in every place (name, tag, property, nowhere), owned and shared variously. */
function fixture(): ImageDoc[] {
  const docs: ImageDoc[] = [];
  for (let i = 0; i < 1500; i++) {
    const place = (w: number) => (i * (w + 3) + w) % 4; // 0 name, 1 tag, 2 property, 3 absent
    const at = (p: number) => WORDS.filter((_, w) => place(w) === p);
    docs.push(makeDoc({
      owner: `p${i % 3}`,
      visibility: (['private', 'public', 'shared', 'community'] as Visibility[])[i % 4]!,
      status: 'active',
      name: [...at(0), `img${i}`].join(' '),
      tags: at(1),
      properties: at(2).length ? { description: at(2).join(' ') } : {},
      members: i % 8 === 2 ? [{ member_id: 'p1', status: 'accepted', created_at: 'x', updated_at: 'x' }] : [],
      created_at: new Date(Date.UTC(2025, 0, 1) + (i % 700) * 1000).toISOString(), // equal times: ties broken by id
    }));
  }
  return docs;
}

/** Every id of a list, following `next`. */
async function pages(pir: InProcessApp, token: string, url: string): Promise<string[]> {
  const ids: string[] = [];
  let next: string | undefined = url;
  while (next) {
    const res: { statusCode: number; body: string } = await pir.app.inject({ method: 'GET', url: next, headers: { 'x-auth-token': token } });
    assert.equal(res.statusCode, 200, res.body);
    const body = JSON.parse(res.body) as { images: { id: string }[]; next?: string };
    ids.push(...body.images.map((i) => i.id));
    next = body.next;
    assert.ok(ids.length <= 1500, 'the pages end');
  }
  return ids;
}

test('sort=relevance: tiered (SQLite), walked tier by tier, and scanned (no rankedList) agree with core/search.ts over every match', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pir-relevance-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'manifest.sqlite');
  const docs = fixture();
  const byId = new Map(docs.map((d) => [d.id, d]));
  const seeded = new SqliteManifestStore({ path });
  await seeded.createMany(docs);
  const walking = new SqliteManifestStore({ path, driveMax: 0 });
  // The same store seen without rankedList: ImageService ranks by scanning the matches.
  const scanning = new Proxy(seeded, {
    get: (target, key) => (key === 'rankedList' ? undefined : typeof Reflect.get(target, key) === 'function' ? Reflect.get(target, key).bind(target) : Reflect.get(target, key)),
  }) as ManifestStore;
  const apps = {
    tiered: await inProcessApp(seeded, { tokens: MEMBER }),
    walked: await inProcessApp(walking, { tokens: MEMBER }),
    scanned: await inProcessApp(scanning, { tokens: MEMBER }),
  };
  t.after(async () => {
    for (const app of Object.values(apps)) await app.close();
    await walking.close();
    await seeded.close();
  });
  let ranked = 0;
  let tiered = 0;
  for (const q of ['alpha beta', 'alpha', 'beta gamma al', 'img1 alpha']) {
    for (const [token, extra] of [['m-token', ''], [apps.tiered.token, ''], [apps.tiered.token, '&owner=p2']] as const) {
      const base = `/v2/images?q=${encodeURIComponent(q)}${extra}`;
      // The plain search (its order tested elsewhere) defines the matches and the tie order.
      const matches = await pages(apps.tiered, token, `${base}&limit=500`);
      const search = parseSearch(q);
      const expected = matches.map((id, i) => ({ id, i, score: relevance(byId.get(id)!, search) }))
        .sort((a, b) => b.score - a.score || a.i - b.i).map((r) => r.id);
      if (new Set(expected.map((id) => relevance(byId.get(id)!, search))).size >= 3) tiered++;
      for (const [name, pir] of Object.entries(apps)) {
        const tok = token === apps.tiered.token ? pir.token : token;
        const got = await pages(pir, tok, `${base}&sort=relevance&limit=120`);
        const at = got.findIndex((id, i) => id !== expected[i]);
        const where = at < 0 ? '' : ` at ${at}: got score ${relevance(byId.get(got[at]!)!, search)}, expected ${relevance(byId.get(expected[at]!)!, search)}`;
        assert.deepEqual(got, expected, `${name}: q=${q}${extra}: ${got.length} images for ${expected.length}${where}`);
      }
      ranked += expected.length;
    }
  }
  assert.ok(ranked > 2500, `the fixture ranks many matches (${ranked})`);
  assert.ok(tiered >= 2, `the fixture gives many answers three scores or more (${tiered})`);
});
