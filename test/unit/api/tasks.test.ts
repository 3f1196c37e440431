import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { testApp, type TestApp } from './tenant-app.js';
import { pageOfTasks, sortTasks, taskOrder } from '../../../api/routes/tasks.js';

describe('tasks: /v2/tasks, /v2/tasks/{id}, /v2/images/{id}/tasks', () => {
  let t: TestApp;
  let imported: string;
  before(async () => {
    t = await testApp();
    imported = await t.create('a-member', { visibility: 'private' });
    await t.activate('a-member', imported);
  });
  after(async () => { await t.close(); });

  it("shows an image's tasks to its owner project and administrators; others who may see the image get none (Glance)", async () => {
    const res = await t.call('a-reader', 'GET', `/v2/images/${imported}/tasks`);
    assert.equal(res.statusCode, 200);
    const [task] = res.json().tasks;
    assert.equal(task.id, `${imported}.1`);
    assert.equal(task.status, 'success');
    assert.equal(task.type, 'api_image_import');
    assert.equal(task.self, `/v2/tasks/${imported}.1`);
    // Glance's Task.succeed(): a finished task expires task_time_to_live (48 h) after it ended.
    assert.equal(Date.parse(task.expires_at) - Date.parse(task.updated_at), 48 * 3600_000);
    assert.match(task.expires_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.equal((await t.call('b-member', 'GET', `/v2/images/${imported}/tasks`)).statusCode, 404);
    assert.equal((await t.call('admin', 'GET', `/v2/images/${imported}/tasks`)).json().tasks.length, 1);
    // Offered to every project for a moment: B sees the image, not its task (nor who started it).
    assert.equal((await t.patch('a-member', imported, [{ op: 'replace', path: '/visibility', value: 'community' }])).statusCode, 200);
    const seenByB = await t.call('b-member', 'GET', `/v2/images/${imported}/tasks`);
    assert.equal(seenByB.statusCode, 200);
    assert.deepEqual(seenByB.json().tasks, []);
    assert.equal((await t.patch('a-member', imported, [{ op: 'replace', path: '/visibility', value: 'private' }])).statusCode, 200);
    const fresh = await t.create('a-member');
    assert.deepEqual((await t.call('a-member', 'GET', `/v2/images/${fresh}/tasks`)).json().tasks, []);
  });

  it("keeps a finished task as it finished when the image changes later (Glance never rewrites a finished task)", async () => {
    const id = await t.create('a-member');
    await t.activate('a-member', id);
    const taskOf = async () => (await t.call('a-member', 'GET', `/v2/images/${id}/tasks`)).json().tasks[0];
    const finished = await taskOf();
    assert.equal(finished.status, 'success');
    assert.equal((await t.call('admin', 'POST', `/v2/images/${id}/actions/deactivate`)).statusCode, 204);
    assert.equal((await t.patch('a-member', id, [{ op: 'add', path: '/note', value: 'later' }])).statusCode, 200);
    const afterwards = await taskOf();
    assert.equal(afterwards.status, 'success');
    assert.deepEqual(afterwards.result, { image_id: id });
    assert.equal(afterwards.updated_at, finished.updated_at);
    assert.equal((await t.call('admin', 'GET', `/v2/tasks/${id}.1`)).json().status, 'success');
    assert.equal((await t.call('a-member', 'DELETE', `/v2/images/${id}`)).statusCode, 204); // the suite's later counts
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
    for (const limit of ['%2B1', '+1', '0_1']) assert.equal((await t.call('admin', 'GET', `/v2/tasks?limit=${limit}`)).json().tasks.length, 1, `Glance: int('${decodeURIComponent(limit)}') is 1`);
    assert.match(page.next, /marker=/);
    const rest = (await t.call('admin', 'GET', page.next)).json();
    assert.equal(rest.tasks.length, 1);
    assert.notEqual(rest.tasks[0].id, page.tasks[0].id);
    // `first` keeps the query but the marker (Glance's tasks serializer).
    assert.equal(page.first, '/v2/tasks?limit=1');
    assert.equal(rest.first, '/v2/tasks?limit=1');
    const filtered = (await t.call('admin', 'GET', '/v2/tasks?limit=1&status=success')).json();
    assert.equal(filtered.first, '/v2/tasks?limit=1&status=success');
    assert.equal((await t.call('admin', 'GET', '/v2/tasks')).json().first, '/v2/tasks');
    assert.equal((await t.call('admin', 'GET', '/v2/tasks?status=failure')).json().tasks.length, 0);
    assert.equal((await t.call('admin', 'GET', '/v2/tasks?status=success')).json().tasks.length, 2);
    const oldestFirst = (await t.call('admin', 'GET', '/v2/tasks?sort_key=created_at&sort_dir=asc')).json().tasks.map((x: { id: string }) => x.id);
    const newestFirst = (await t.call('admin', 'GET', '/v2/tasks?sort_key=created_at&sort_dir=desc')).json().tasks.map((x: { id: string }) => x.id);
    assert.deepEqual(oldestFirst, [...newestFirst].reverse());
    for (const q of ['bogus=1', 'limit=-1', 'limit=abc', 'status=odd', 'marker=nope', 'sort_key=owner', 'marker=' + 'f'.repeat(8), 'sort_dir=up', 'type=bogus']) {
      assert.equal((await t.call('admin', 'GET', `/v2/tasks?${q}`)).statusCode, 400, q);
    }
    assert.match((await t.call('admin', 'GET', '/v2/tasks?type=bogus')).json().error.message, /Invalid type value: 'bogus'/);
    assert.equal((await t.call('admin', 'GET', '/v2/tasks?type=api_image_import')).json().tasks.length, 2);
    assert.equal((await t.call('admin', 'GET', '/v2/tasks?type=import')).json().tasks.length, 0);
  });

  it("orders ties by created_at, then id, all in sort_dir (Glance's _task_get_all)", () => {
    const tasks = [
      { id: 'a.1', status: 'success', created_at: '2026-01-02T00:00:00Z' },
      { id: 'b.1', status: 'success', created_at: '2026-01-01T00:00:00Z' },
      { id: 'c.1', status: 'failure', created_at: '2026-01-03T00:00:00Z' },
      { id: 'd.1', status: 'success', created_at: '2026-01-01T00:00:00Z' },
    ];
    const ids = (key: string, dir: 'asc' | 'desc') => sortTasks([...tasks], key, dir).map((task) => task.id);
    assert.deepEqual(ids('status', 'asc'), ['c.1', 'b.1', 'd.1', 'a.1']);
    assert.deepEqual(ids('status', 'desc'), ['a.1', 'd.1', 'b.1', 'c.1']);
    assert.deepEqual(ids('created_at', 'desc'), ['c.1', 'a.1', 'd.1', 'b.1']);
    assert.deepEqual(ids('id', 'asc'), ['a.1', 'b.1', 'c.1', 'd.1']);
  });

  it('pages by keeping the page only: the same pages as sorting every task, for each key, direction and marker', async () => {
    const statuses = ['success', 'failure', 'processing'];
    const tasks = Array.from({ length: 57 }, (_, i) => ({ id: `${(i * 37) % 57}.1`, status: statuses[i % 3]!, type: 'api_image_import', created_at: `2026-01-0${1 + (i % 4)}T00:00:00Z`, updated_at: `2026-02-${10 + (i % 7)}T00:00:00Z` }));
    async function* each() { yield* tasks; }
    for (const key of ['created_at', 'updated_at', 'id', 'type', 'status']) {
      for (const dir of ['asc', 'desc'] as const) {
        const sorted = sortTasks([...tasks], key, dir);
        for (const size of [1, 5, 20, 100]) {
          for (const at of [-1, 0, 10, 55, 56]) {
            const after = at < 0 ? null : sorted[at]!;
            const page = await pageOfTasks(each(), taskOrder(key, dir), after, size);
            assert.deepEqual(page.map((x) => x.id), sorted.slice(at + 1, at + 1 + size).map((x) => x.id), `${key} ${dir} size ${size} after ${at}`);
          }
        }
      }
    }
  });

  it('takes a limit above 1000 as 1000, as Glance (api_limit_max)', async () => {
    const capped = await t.call('admin', 'GET', '/v2/tasks?limit=2000');
    assert.equal(capped.statusCode, 200, capped.body);
    assert.equal(capped.json().first, '/v2/tasks?limit=2000');
    assert.equal((await t.call('admin', 'GET', '/v2/tasks?limit=99999999999')).statusCode, 200);
    assert.equal((await t.call('admin', 'GET', '/v2/tasks?limit=-1')).statusCode, 400);
  });

  describe('POST /v2/tasks: the legacy import task', () => {
    const legacy = (input: Record<string, unknown>, type = 'import') => ({ type, input });
    const good = { import_from: 'http://pir-test-host.invalid/disk.qcow2', import_from_format: 'qcow2', image_properties: { name: 'legacy', visibility: 'private' } };
    const imageCount = async () => (await t.call('admin', 'GET', '/v2/images?limit=1000')).json().images.length;

    it("is for administrators (Glance's tasks_api_access), before any check of the body", async () => {
      for (const token of ['a-member', 'a-reader', 'b-member'] as const) {
        assert.equal((await t.call(token, 'POST', '/v2/tasks', legacy(good))).statusCode, 403, token);
        assert.equal((await t.call(token, 'POST', '/v2/tasks', { nonsense: true })).statusCode, 403, token);
      }
    });

    it('refuses a malformed or oversized task, a refused URL or a reserved attribute, and leaves no image behind', async () => {
      const before = await imageCount();
      const refusals: Array<[unknown, number, string]> = [
        [legacy(good, 'api_image_import'), 400, 'invalid_request'],
        [{ type: 'import' }, 400, 'invalid_request'],
        [legacy({ ...good, import_from: undefined }), 400, 'invalid_request'],
        [legacy({ ...good, import_from_format: undefined }), 400, 'invalid_request'],
        [legacy({ ...good, image_properties: 'x' }), 400, 'invalid_request'],
        [legacy({ ...good, image_properties: { disk_format: 'raw' } }), 400, 'invalid_request'],
        [legacy({ ...good, image_properties: { min_disk: 'lots' } }), 400, 'invalid_request'],
        [legacy({ ...good, image_properties: { status: 'active' } }), 403, 'read_only_property'],
        [legacy({ ...good, image_properties: { os_glance_import_task: 'x' } }), 403, 'reserved_property'],
        [legacy({ ...good, import_from: 'file:///etc/passwd' }), 400, 'uri_refused'],
        [legacy({ ...good, import_from: 'http://127.0.0.1/disk.qcow2' }), 400, 'address_refused'],
        [legacy({ ...good, import_from: 'http://169.254.169.254/latest/meta-data/' }), 400, 'address_refused'],
        [legacy({ ...good, import_from_format: 'cow' }), 400, 'invalid_value'],
        // Oversized: each field is bounded, and so is the body.
        [legacy({ ...good, import_from: `http://example.org/${'a'.repeat(4096)}` }), 400, 'invalid_request'],
        [legacy({ ...good, import_from_format: 'q'.repeat(100) }), 400, 'invalid_request'],
        [legacy({ ...good, image_properties: Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`p${i}`, 'v'])) }), 400, 'invalid_request'],
        [legacy({ ...good, image_properties: { big: 'x'.repeat(2 * 1024 * 1024) } }), 413, 'body_too_large'],
      ];
      for (const [body, status, code] of refusals) {
        const res = await t.call('admin', 'POST', '/v2/tasks', body);
        assert.deepEqual([res.statusCode, res.json().error?.error_code], [status, code], JSON.stringify(body));
      }
      assert.equal(await imageCount(), before, 'no image is created for a refused task');
    });

    it('creates the image and its task (201, Location), which fails with the reason when the download does', async () => {
      const res = await t.call('admin', 'POST', '/v2/tasks', legacy(good));
      assert.equal(res.statusCode, 201, res.body);
      const task = res.json();
      assert.equal(res.headers.location, `/v2/tasks/${task.id}`);
      assert.match(task.id, /^[0-9a-f-]{36}\.0$/);
      assert.deepEqual([task.type, task.input, task.result, task.self, task.schema], ['import', good, null, `/v2/tasks/${task.id}`, '/v2/schemas/task']);
      assert.ok(['pending', 'processing'].includes(task.status), task.status);
      // Who created it, in which request, as Glance's tasks record; no expiry while it runs.
      assert.deepEqual([task.user_id, task.request_id, task.expires_at], ['admin-user', res.headers['x-openstack-request-id'], null]);
      assert.match(task.request_id, /^req-/);
      const image = (await t.call('admin', 'GET', `/v2/images/${task.image_id}`)).json();
      assert.deepEqual([image.name, image.visibility, image.disk_format, image.container_format], ['legacy', 'private', 'qcow2', 'bare']);
      // The host does not resolve: the image is killed with the reason, and its task says so.
      let shown = task;
      for (let i = 0; i < 200 && shown.status !== 'failure'; i++) {
        await new Promise((r) => setTimeout(r, 25));
        shown = (await t.call('admin', 'GET', `/v2/tasks/${task.id}`)).json();
      }
      assert.equal(shown.status, 'failure');
      assert.match(shown.message, /^import: .*pir-test-host\.invalid/);
      assert.deepEqual([shown.user_id, shown.request_id], [task.user_id, task.request_id]);
      assert.equal(Date.parse(shown.expires_at) - Date.parse(shown.updated_at), 48 * 3600_000, 'Glance\'s Task.fail(): ended + 48 h');
      assert.deepEqual((await t.call('admin', 'GET', `/v2/images/${task.image_id}/tasks`)).json().tasks.map((x: { id: string }) => x.id), [task.id]);
      assert.ok((await t.call('admin', 'GET', '/v2/tasks?type=import')).json().tasks.some((x: { id: string }) => x.id === task.id));
    });
  });
});
