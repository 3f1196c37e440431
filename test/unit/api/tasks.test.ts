import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { testApp, type TestApp } from './tenant-app.js';

describe('tasks: /v2/tasks, /v2/tasks/{id}, /v2/images/{id}/tasks', () => {
  let t: TestApp;
  let imported: string;
  before(async () => {
    t = await testApp();
    imported = await t.create('a-member', { visibility: 'private' });
    await t.activate('a-member', imported);
  });
  after(async () => { await t.close(); });

  it("shows an image's tasks to whoever may see the image", async () => {
    const res = await t.call('a-reader', 'GET', `/v2/images/${imported}/tasks`);
    assert.equal(res.statusCode, 200);
    const [task] = res.json().tasks;
    assert.equal(task.id, `${imported}.1`);
    assert.equal(task.status, 'success');
    assert.equal(task.type, 'api_image_import');
    assert.equal(task.self, `/v2/tasks/${imported}.1`);
    assert.equal((await t.call('b-member', 'GET', `/v2/images/${imported}/tasks`)).statusCode, 404);
    const fresh = await t.create('a-member');
    assert.deepEqual((await t.call('a-member', 'GET', `/v2/images/${fresh}/tasks`)).json().tasks, []);
  });

  it("keeps the tasks API for administrators (Glance's tasks_api_access)", async () => {
    for (const token of ['a-member', 'a-reader', 'b-member'] as const) {
      assert.equal((await t.call(token, 'GET', '/v2/tasks')).statusCode, 403, token);
      assert.equal((await t.call(token, 'GET', `/v2/tasks/${imported}.1`)).statusCode, 403, token);
    }
    const list = await t.call('admin', 'GET', '/v2/tasks');
    assert.equal(list.statusCode, 200);
    assert.equal(list.json().schema, '/v2/schemas/tasks');
    assert.ok(list.json().tasks.some((task: { id: string }) => task.id === `${imported}.1`));
    assert.equal(list.json().tasks[0].input, undefined); // as Glance's list view
    const one = await t.call('admin', 'GET', `/v2/tasks/${imported}.1`);
    assert.equal(one.statusCode, 200);
    assert.deepEqual(one.json().result, { image_id: imported });
    assert.equal((await t.call('admin', 'GET', `/v2/tasks/${imported}.7`)).statusCode, 404);
    assert.equal((await t.call('admin', 'GET', '/v2/tasks/nonsense')).statusCode, 404);
  });

  it('filters and pages the task list, and refuses unknown parameters', async () => {
    const second = await t.create('b-member');
    await t.activate('b-member', second);
    const page = (await t.call('admin', 'GET', '/v2/tasks?limit=1')).json();
    assert.equal(page.tasks.length, 1);
    assert.match(page.next, /marker=/);
    const rest = (await t.call('admin', 'GET', page.next)).json();
    assert.equal(rest.tasks.length, 1);
    assert.notEqual(rest.tasks[0].id, page.tasks[0].id);
    assert.equal((await t.call('admin', 'GET', '/v2/tasks?status=failure')).json().tasks.length, 0);
    assert.equal((await t.call('admin', 'GET', '/v2/tasks?status=success')).json().tasks.length, 2);
    const oldestFirst = (await t.call('admin', 'GET', '/v2/tasks?sort_key=created_at&sort_dir=asc')).json().tasks.map((x: { id: string }) => x.id);
    const newestFirst = (await t.call('admin', 'GET', '/v2/tasks?sort_key=created_at&sort_dir=desc')).json().tasks.map((x: { id: string }) => x.id);
    assert.deepEqual(oldestFirst, [...newestFirst].reverse());
    for (const q of ['bogus=1', 'limit=-1', 'limit=abc', 'status=odd', 'marker=nope', 'sort_key=owner', 'marker=' + 'f'.repeat(8), 'sort_dir=up']) {
      assert.equal((await t.call('admin', 'GET', `/v2/tasks?${q}`)).statusCode, 400, q);
    }
  });
});
