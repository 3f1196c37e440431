/**
 * /v2/webhooks in process (inject): validation (4xx in PIR's error shape), the URL rules, secrets
 * shown only at creation and rotation, project scoping of every endpoint (another project's
 * webhook is 404, an admin sees all), and which projects' subscriptions an image event reaches
 * for each kind of image (the fan-out's visibility matrix).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { testApp, type TestApp, type Token } from './tenant-app.js';

describe('webhooks API (inject)', () => {
  let t: TestApp;
  before(async () => { t = await testApp(); });
  after(async () => { await t.close(); });

  const create = async (token: Token, body: Record<string, unknown>) => t.call(token, 'POST', '/v2/webhooks', body);
  const ok = { url: 'https://hooks.example.com/pir', events: ['image.active'] };

  it('creates a webhook: 201, Location, the secret once; show and list never return it', async () => {
    const res = await create('a-member', { ...ok, description: 'ci', filters: { tags: ['x'], name_prefix: 'ubuntu-' } });
    assert.equal(res.statusCode, 201, res.body);
    const body = res.json();
    assert.match(body.secret, /^whsec_[A-Za-z0-9+/=]{40,}$/);
    assert.equal(res.headers.location, `/v2/webhooks/${body.id}`);
    assert.equal(body.enabled, true);
    assert.equal(body.project_id, 'A');
    const shown = (await t.call('a-member', 'GET', `/v2/webhooks/${body.id}`)).json();
    assert.equal(shown.secret, undefined);
    assert.ok(!JSON.stringify(shown).includes(body.secret.slice(6, 20)));
    const listed = (await t.call('a-member', 'GET', '/v2/webhooks')).json();
    assert.ok(listed.webhooks.some((w: { id: string }) => w.id === body.id));
    assert.ok(!JSON.stringify(listed).includes('whsec_'));
    const stored = await t.webhookStore.getSubscription(body.id);
    assert.ok(stored && !JSON.stringify(stored).includes(body.secret.slice(6)), 'the store holds the secret sealed, not in clear');
  });

  it('refuses bad input with 4xx in the error shape', async () => {
    const cases: [Record<string, unknown>, number, string][] = [
      [{ ...ok, url: 'http://hooks.example.com/pir' }, 400, 'webhook_url_refused'],
      [{ ...ok, url: 'https://127.0.0.1/pir' }, 400, 'webhook_url_refused'],
      [{ ...ok, url: 'https://10.1.2.3/pir' }, 400, 'webhook_url_refused'],
      [{ ...ok, url: 'https://user:pw@hooks.example.com/' }, 400, 'webhook_url_refused'],
      [{ ...ok, url: 'ftp://hooks.example.com/' }, 400, 'webhook_url_refused'],
      [{ ...ok, url: 'not a url' }, 400, 'webhook_url_refused'],
      [{ ...ok, url: 'https://hooks.example.com:8443/' }, 400, 'webhook_url_refused'],
      [{ ...ok, events: [] }, 400, 'invalid_request'],
      [{ ...ok, events: ['image.bogus!'] }, 400, 'invalid_request'],
      // Well formed but not a type PIR sends (a typo would make a webhook that never fires).
      [{ ...ok, events: ['image.activ'] }, 400, 'webhook_invalid'],
      [{ ...ok, events: ['image.active', 'image.foo.bar'] }, 400, 'webhook_invalid'],
      [{ ...ok, events: ['image.stage.*'] }, 400, 'webhook_invalid'],
      [{ ...ok, events: 'image.active' }, 400, 'invalid_request'],
      [{ url: ok.url }, 400, 'invalid_request'],
      [{ ...ok, secret: 'whsec_mine' }, 400, 'invalid_request'],
      [{ ...ok, filters: { visibility: ['everyone'] } }, 400, 'invalid_request'],
      [{ ...ok, filters: { unknown: 1 } }, 400, 'invalid_request'],
      [{ ...ok, all_projects: true }, 403, 'webhook_all_projects_admin_only'],
    ];
    for (const [body, status, code] of cases) {
      const res = await create('a-member', body);
      assert.equal(res.statusCode, status, `${JSON.stringify(body)} → ${res.body}`);
      const err = res.json().error;
      assert.equal(err.error_code, code, JSON.stringify(body));
      assert.equal(typeof err.message, 'string');
    }
    assert.equal((await t.call('a-member', 'POST', '/v2/webhooks', 'not json', { 'content-type': 'application/json' })).statusCode, 400);
    assert.equal((await t.call('a-member', 'GET', '/v2/webhooks?limit=abc')).json().error.error_code, 'bad_limit');
    assert.equal((await t.call('a-member', 'GET', '/v2/webhooks?limit=0')).statusCode, 400);
    // A marker that is not one of the caller's webhooks (unknown, or another project's) is 400, not a silent partial page.
    const othersWebhook = (await create('b-member', ok)).json().id as string;
    for (const marker of ['bogus', othersWebhook]) {
      assert.equal((await t.call('a-member', 'GET', `/v2/webhooks?marker=${marker}`)).json().error?.error_code, 'bad_marker', marker);
    }
    const mine = (await create('a-member', ok)).json().id as string;
    assert.equal((await t.call('a-member', 'GET', `/v2/webhooks?marker=${mine}`)).statusCode, 200);
    assert.equal((await t.call('a-member', 'GET', `/v2/webhooks/${mine}/deliveries?marker=msg_nope`)).json().error?.error_code, 'bad_marker');
    assert.equal((await t.call('a-member', 'GET', `/v2/webhooks/${'x'.repeat(100)}`)).statusCode, 400);
    assert.equal((await t.call('a-member', 'PATCH', '/v2/webhooks/nope', {})).statusCode, 400, 'an empty update');
    // Allow-listed by host:port: plain http is accepted there.
    assert.equal((await create('a-member', { ...ok, url: 'http://hooks.test:8080/in' })).statusCode, 201);
    assert.equal((await create('admin', { ...ok, all_projects: true })).statusCode, 201);
  });

  it("readers of the project see its webhooks but change nothing (403): not its URL, secret, pings, deliveries or existence", async () => {
    const id = (await create('a-member', ok)).json().id as string;
    assert.equal((await t.call('a-reader', 'GET', `/v2/webhooks/${id}`)).statusCode, 200);
    assert.equal((await t.call('a-reader', 'GET', `/v2/webhooks/${id}/deliveries`)).statusCode, 200);
    const writes: [string, string, unknown?][] = [
      ['POST', '/v2/webhooks', ok], ['PATCH', `/v2/webhooks/${id}`, { url: 'https://elsewhere.example.com/' }], ['POST', `/v2/webhooks/${id}/rotate-secret`],
      ['POST', `/v2/webhooks/${id}/ping`], ['POST', `/v2/webhooks/${id}/deliveries/msg_x/redeliver`], ['DELETE', `/v2/webhooks/${id}`],
    ];
    for (const [method, url, body] of writes) {
      const res = await t.call('a-reader', method, url, body);
      assert.equal(res.statusCode, 403, `${method} ${url}: ${res.body}`);
      assert.equal(res.json().error.error_code, 'policy_denied');
    }
    assert.equal((await t.call('a-member', 'GET', `/v2/webhooks/${id}`)).json().url, ok.url);
  });

  it("an admin's all-projects webhook in a project is the admins' alone: its members and readers neither see nor change it (404)", async () => {
    // Made by an admin whose token is scoped to project A.
    const made = (await create('admin', { ...ok, all_projects: true })).json().id as string;
    const sub = (await t.webhookStore.getSubscription(made))!;
    await t.webhookStore.replaceSubscription({ ...sub, project_id: 'A' });
    const own = (await create('a-member', ok)).json().id as string;
    for (const token of ['a-member', 'a-reader'] as const) {
      const listed = (await t.call(token, 'GET', '/v2/webhooks?limit=1000')).json().webhooks.map((w: { id: string }) => w.id);
      assert.ok(listed.includes(own) && !listed.includes(made), `${token} lists the project's own webhooks only`);
      assert.equal((await t.call(token, 'GET', `/v2/webhooks?marker=${made}`)).json().error?.error_code, 'bad_marker');
      const calls: [string, string, unknown?][] = [
        ['GET', `/v2/webhooks/${made}`], ['GET', `/v2/webhooks/${made}/deliveries`],
        ['PATCH', `/v2/webhooks/${made}`, { url: 'https://attacker.example.com/' }], ['POST', `/v2/webhooks/${made}/rotate-secret`],
        ['POST', `/v2/webhooks/${made}/ping`], ['POST', `/v2/webhooks/${made}/deliveries/msg_x/redeliver`], ['DELETE', `/v2/webhooks/${made}`],
      ];
      for (const [method, url, body] of calls) {
        const res = await t.call(token, method, url, body);
        assert.equal(res.statusCode, 404, `${token} ${method} ${url}: ${res.body}`);
        assert.equal(res.json().error.error_code, 'webhook_not_found');
      }
    }
    // A page of one at a time still walks past it to every webhook of the project.
    let marker = '';
    const walked: string[] = [];
    for (;;) {
      const page = (await t.call('a-member', 'GET', `/v2/webhooks?limit=1${marker ? `&marker=${marker}` : ''}`)).json().webhooks as { id: string }[];
      if (!page.length) break;
      walked.push(page[0]!.id);
      marker = page[0]!.id;
    }
    assert.ok(walked.includes(own) && !walked.includes(made));
    const shown = (await t.call('admin', 'GET', `/v2/webhooks/${made}`)).json();
    assert.equal(shown.url, ok.url, 'untouched');
    assert.equal(shown.all_projects, true);
    assert.equal((await t.call('admin', 'PATCH', `/v2/webhooks/${made}`, { enabled: false })).statusCode, 200);
  });

  it('a caller without the reader role (a service user) neither sees nor changes the project\'s webhooks, nor opens the event stream (403)', async () => {
    const id = (await create('a-member', ok)).json().id as string;
    const calls: [string, string, unknown?][] = [
      ['GET', '/v2/webhooks'], ['GET', `/v2/webhooks/${id}`], ['GET', `/v2/webhooks/${id}/deliveries`],
      ['POST', '/v2/webhooks', ok], ['PATCH', `/v2/webhooks/${id}`, { enabled: false }], ['DELETE', `/v2/webhooks/${id}`], ['GET', '/v2/events'],
    ];
    for (const [method, url, body] of calls) {
      const res = await t.call('a-service', method, url, body);
      assert.equal(res.statusCode, 403, `${method} ${url}: ${res.body}`);
      assert.equal(res.json().error.error_code, 'policy_denied');
      assert.ok(!res.body.includes('hooks.example.com'), 'nothing of the webhook in the refusal');
    }
    assert.equal((await t.call('a-member', 'GET', `/v2/webhooks/${id}`)).json().enabled, true);
  });

  it('holds a project to 100 webhooks (409) and a webhook to 5 pings a minute (429, Retry-After)', async () => {
    const held = (await t.call('c-member', 'GET', '/v2/webhooks?limit=200')).json().webhooks.length as number;
    for (let i = held; i < 100; i++) assert.equal((await create('c-member', ok)).statusCode, 201);
    const over = await create('c-member', ok);
    assert.equal(over.statusCode, 409);
    assert.equal(over.json().error.error_code, 'too_many_webhooks');
    const id = (await t.call('c-member', 'GET', '/v2/webhooks?limit=1')).json().webhooks[0].id as string;
    for (let i = 0; i < 5; i++) assert.equal((await t.call('c-member', 'POST', `/v2/webhooks/${id}/ping`)).statusCode, 202);
    const paced = await t.call('c-member', 'POST', `/v2/webhooks/${id}/ping`);
    assert.equal(paced.statusCode, 429);
    assert.equal(paced.json().error.error_code, 'webhook_ping_too_soon');
    assert.ok(Number(paced.headers['retry-after']) >= 1 && Number(paced.headers['retry-after']) <= 60, String(paced.headers['retry-after']));
    assert.equal((await create('a-member', ok)).statusCode, 201, 'another project is not held by it');
    for (const w of (await t.call('c-member', 'GET', '/v2/webhooks?limit=200')).json().webhooks as { id: string }[]) {
      assert.equal((await t.call('c-member', 'DELETE', `/v2/webhooks/${w.id}`)).statusCode, 204);
    }
  });

  it('every endpoint is scoped to the project: another project gets 404, an admin reaches it', async () => {
    const id = (await create('a-member', ok)).json().id as string;
    const calls: [string, string, unknown?][] = [
      ['GET', `/v2/webhooks/${id}`], ['PATCH', `/v2/webhooks/${id}`, { description: 'x' }], ['POST', `/v2/webhooks/${id}/rotate-secret`],
      ['POST', `/v2/webhooks/${id}/ping`], ['GET', `/v2/webhooks/${id}/deliveries`], ['POST', `/v2/webhooks/${id}/deliveries/msg_x/redeliver`],
      ['DELETE', `/v2/webhooks/${id}`],
    ];
    for (const token of ['b-member', 'b-reader', 'c-member'] as Token[]) {
      for (const [method, url, body] of calls) {
        const res = await t.call(token, method, url, body);
        assert.equal(res.statusCode, 404, `${token} ${method} ${url}: ${res.body}`);
        assert.equal(res.json().error.error_code, 'webhook_not_found');
      }
      assert.ok(!(await t.call(token, 'GET', '/v2/webhooks?limit=200')).json().webhooks.some((w: { id: string }) => w.id === id));
    }
    assert.equal((await t.call('admin', 'GET', `/v2/webhooks/${id}`)).statusCode, 200);
    assert.ok((await t.call('admin', 'GET', '/v2/webhooks?limit=200')).json().webhooks.some((w: { id: string }) => w.id === id));
    // The owner: update, rotate (a new secret), ping (202), deliveries, a redelivery of an unknown id (404), delete.
    assert.equal((await t.call('a-member', 'PATCH', `/v2/webhooks/${id}`, { events: ['image.*'], enabled: false })).json().enabled, false);
    assert.equal((await t.call('a-member', 'POST', `/v2/webhooks/${id}/ping`)).json().error.error_code, 'webhook_disabled');
    await t.call('a-member', 'PATCH', `/v2/webhooks/${id}`, { enabled: true });
    assert.match((await t.call('a-member', 'POST', `/v2/webhooks/${id}/rotate-secret`)).json().secret, /^whsec_/);
    const ping = await t.call('a-member', 'POST', `/v2/webhooks/${id}/ping`);
    assert.equal(ping.statusCode, 202);
    const list = (await t.call('a-member', 'GET', `/v2/webhooks/${id}/deliveries`)).json();
    assert.equal(list.deliveries[0].event_type, 'webhook.ping');
    assert.equal(list.deliveries[0].status, 'pending');
    assert.equal((await t.call('a-member', 'POST', `/v2/webhooks/${id}/deliveries/${list.deliveries[0].id}/redeliver`)).json().error.error_code, 'delivery_pending');
    assert.equal((await t.call('a-member', 'POST', `/v2/webhooks/${id}/deliveries/msg_nope/redeliver`)).json().error.error_code, 'delivery_not_found');
    assert.equal((await t.call('a-member', 'DELETE', `/v2/webhooks/${id}`)).statusCode, 204);
    assert.equal((await t.call('a-member', 'GET', `/v2/webhooks/${id}`)).statusCode, 404);
  });

  it('serves /v2/schemas/webhook and /v2/schemas/webhooks', async () => {
    const one = await t.call('a-reader', 'GET', '/v2/schemas/webhook');
    assert.equal(one.statusCode, 200);
    assert.equal(one.json().name, 'webhook');
    assert.ok(one.json().properties.events);
    assert.equal((await t.call('a-reader', 'GET', '/v2/schemas/webhooks')).json().name, 'webhooks');
  });

  it('making an image public sends image.updated to another project\'s subscription that now sees it', async () => {
    const id = await t.create('a-member', { visibility: 'private' });
    const sub = (await create('b-member', { ...ok, events: ['image.updated'], filters: { image_ids: [id] } })).json().id as string;
    await t.call('a-member', 'PUT', `/v2/images/${id}/tags/before`);
    await new Promise((r) => setTimeout(r, 150));
    assert.equal((await t.webhookStore.listDeliveries(sub, 10)).length, 0, 'B cannot see the private image yet');
    assert.equal((await t.patch('admin', id, [{ op: 'replace', path: '/visibility', value: 'public' }])).statusCode, 200);
    const end = Date.now() + 5000;
    while ((await t.webhookStore.listDeliveries(sub, 10)).length === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    const [d] = await t.webhookStore.listDeliveries(sub, 10);
    assert.ok(d, 'B got the update that made the image visible to it');
    const body = JSON.parse(d.payload);
    assert.equal(body.type, 'image.updated');
    assert.equal(body.data.visibility, 'public');
  });

  // Which subscriptions an image.active of an image of project A reaches, by kind of image.
  const KINDS = ['private', 'shared-pending', 'shared-accepted', 'community', 'public'] as const;
  const SUBSCRIBERS: { token: Token; all?: boolean; gets: (kind: (typeof KINDS)[number]) => boolean }[] = [
    { token: 'a-member', gets: () => true },
    { token: 'b-member', gets: (k) => k === 'shared-accepted' || k === 'community' || k === 'public' },
    { token: 'c-member', gets: (k) => k === 'community' || k === 'public' },
    { token: 'admin', all: true, gets: () => true },
    { token: 'admin', gets: (k) => k === 'community' || k === 'public' },
  ];
  for (const kind of KINDS) {
    it(`fan-out of image.active for A's ${kind} image reaches exactly the projects that may see it`, async () => {
      const visibility = kind.startsWith('shared') ? 'shared' : kind === 'public' ? 'private' : kind;
      const id = await t.create('a-member', { visibility });
      // Only an admin makes an image public (Glance's publicize_image).
      if (kind === 'public') assert.equal((await t.patch('admin', id, [{ op: 'replace', path: '/visibility', value: 'public' }])).statusCode, 200);
      if (kind.startsWith('shared')) {
        assert.equal((await t.call('a-member', 'POST', `/v2/images/${id}/members`, { member: 'B' })).statusCode, 200);
        if (kind === 'shared-accepted') assert.equal((await t.call('b-member', 'PUT', `/v2/images/${id}/members/B`, { status: 'accepted' })).statusCode, 200);
      }
      const subs = [];
      for (const s of SUBSCRIBERS) {
        const res = await create(s.token, { ...ok, filters: { image_ids: [id] }, ...(s.all ? { all_projects: true } : {}) });
        assert.equal(res.statusCode, 201, res.body);
        subs.push({ ...s, id: res.json().id as string });
      }
      await t.activate('a-member', id);
      const expected = subs.filter((s) => s.gets(kind));
      const end = Date.now() + 5000;
      const count = async (subId: string) => (await t.webhookStore.listDeliveries(subId, 10)).length;
      while (Date.now() < end) {
        const got = await Promise.all(expected.map((s) => count(s.id)));
        if (got.every((n) => n === 1)) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise((r) => setTimeout(r, 100));
      for (const s of subs) {
        const deliveries = await t.webhookStore.listDeliveries(s.id, 10);
        assert.equal(deliveries.length, s.gets(kind) ? 1 : 0, `${s.token}${s.all ? ' (all_projects)' : ''} on a ${kind} image`);
        if (deliveries[0]) assert.equal(JSON.parse(deliveries[0].payload).data.id, id);
      }
    });
  }
});
