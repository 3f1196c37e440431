/** Issue 6 point 4: malformed list parameters are 400s that name the parameter, never 500s. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { appFixture, assertErrorShape, queuedImage, TOKEN, type AppFixture } from './app-fixture.js';

describe('GET /v2/images query parameters', () => {
  let f: AppFixture;
  before(async () => {
    f = await appFixture();
    for (let i = 0; i < 3; i++) await queuedImage(f, `img-${i}`);
  });
  after(async () => f.close());

  const list = (query: string) => f.app.inject({ method: 'GET', url: `/v2/images${query}`, headers: { 'x-auth-token': TOKEN } });

  it('answers limit=0 with an empty page and no next link (it crashed with a 500)', async () => {
    const response = await list('?limit=0');
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json();
    assert.deepEqual(body.images, []);
    assert.equal(body.next, undefined);
  });

  it('refuses every malformed parameter with a 400 naming it', async () => {
    const cases: [string, string, string][] = [
      ['?limit=', 'bad_limit', 'limit'],
      ['?limit=abc', 'bad_limit', 'limit'],
      ['?limit=-1', 'bad_limit', 'limit'],
      ['?limit=1.5', 'bad_limit', 'limit'],
      ['?limit=1e3', 'bad_limit', 'limit'],
      ['?marker=', 'bad_marker', 'marker'],
      ['?marker=00000000-0000-4000-8000-000000000000', 'bad_marker', 'marker'],
      ['?sort=', 'bad_sort', 'sort'],
      ['?sort=:asc', 'bad_sort', 'sort'],
      ['?sort=name:up', 'bad_sort_dir', 'sort'],
      ['?sort=colour', 'bad_sort_key', 'sort'],
      ['?sort_key=', 'bad_sort_key', 'sort_key'],
      ['?sort_key=colour', 'bad_sort_key', 'sort_key'],
      ['?sort_dir=', 'bad_sort_dir', 'sort_dir'],
      ['?sort_dir=sideways', 'bad_sort_dir', 'sort_dir'],
      ['?sort=name&sort_key=size', 'bad_sort', 'sort'],
    ];
    for (const [query, code, param] of cases) {
      const response = await list(query);
      assert.equal(response.statusCode, 400, `${query}: ${response.body}`);
      assertErrorShape(response.json(), 400, code);
      assert.match(response.json().error.message, new RegExp(`'${param}'`), query);
    }
  });

  it('still pages with limit, marker and both sort syntaxes', async () => {
    const first = (await list('?limit=2&sort=name:asc')).json();
    assert.deepEqual(first.images.map((i: { name: string }) => i.name), ['img-0', 'img-1']);
    assert.match(first.next, /marker=/);
    const second = (await list(`?limit=2&sort=name:asc&marker=${first.images[1].id}`)).json();
    assert.deepEqual(second.images.map((i: { name: string }) => i.name), ['img-2']);
    assert.equal(second.next, undefined);
    const classic = (await list('?sort_key=name&sort_dir=desc&limit=1')).json();
    assert.equal(classic.images[0].name, 'img-2');
  });
});
