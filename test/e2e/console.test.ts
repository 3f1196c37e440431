/**
 * The web console (/console) in headless Chromium (Debian's chromium, driven by playwright-core)
 * against a real `pir serve` with two projects: sign in with a token; upload a qcow2 by the file
 * picker and follow it live (GET /v2/events) to active; a hostile qcow2 shows its refusal in
 * plain words; edit a property; project B's private image never shows; sign out forgets the
 * token. Screenshots (list, image page, upload in progress) are saved beside the test logs.
 * Extensions (keyword search, galleries, share links, tus) are tested when this PIR declares
 * them, found out as the console does (/v2/schemas, the list's ?q=, tus's OPTIONS); when it
 * does not, those tests say so as skipped with the reason.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { makeIdentities, startTenantPir, type Identities, type TenantPir } from '../support/clients.js';
import { ensureQemuImg, makeImage, makeTempDir, removeDir } from '../support/images.js';
import { PirClient } from '../support/pir-client.js';
import { testLogDir } from '../support/pir-process.js';
import { inCI } from '../support/services.js';

const logDir = testLogDir('console');
const CHROMIUM = process.env.PIR_TEST_CHROMIUM || '/usr/bin/chromium';
const missing = !existsSync(CHROMIUM);
if (missing && !inCI) console.log(`# console e2e skipped: no Chromium at ${CHROMIUM} (apt-get install chromium)`);

/** What the server declares, probed as the console probes it. */
async function declared(base: string, token: string) {
  const ok = async (path: string, init: RequestInit = {}) => {
    const r = await fetch(`${base}${path}`, { ...init, headers: { 'x-auth-token': token } });
    await r.arrayBuffer();
    return r;
  };
  const schema = async (...names: string[]) => { for (const n of names) if ((await ok(`/v2/schemas/${n}`)).status === 200) return true; return false; };
  return {
    events: await schema('events'),
    search: (await ok('/v2/images?q=pir&sort=relevance&limit=1')).status === 200,
    galleries: (await schema('galleries', 'gallery')) || (await ok('/v2/galleries')).status === 200,
    shareLinks: await schema('share-links', 'share-link'),
    tus: (await ok(`/v2/images/${randomUUID()}/uploads`, { method: 'OPTIONS' })).headers.has('tus-version'),
  };
}

describe('web console in a browser', { skip: missing && !inCI ? `no Chromium at ${CHROMIUM}` : false }, () => {
  let pir: TenantPir | undefined;
  let browser: Browser | undefined;
  let page: Page;
  let dir = '';
  let ids: Identities;
  let base = '';
  let features: Awaited<ReturnType<typeof declared>>;
  let goodId = '';

  before(async () => {
    if (missing) throw new Error(`CI is set but Chromium is missing at ${CHROMIUM}: apt-get install chromium`);
    ensureQemuImg();
    dir = await makeTempDir('pir-e2e-console-');
    ids = makeIdentities();
    pir = await startTenantPir(dir, ids, logDir);
    base = pir.url;
    features = await declared(base, ids.A.token);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('pageerror', (e) => console.log(`# page error: ${e.message}`));
  });
  after(async () => {
    await browser?.close();
    await pir?.stop();
    if (dir) await removeDir(dir);
  });

  it('is served with a strict CSP, hashed immutable assets, and paints within a second', async () => {
    const response = await fetch(`${base}/console`);
    const html = await response.text();
    assert.equal(response.status, 200);
    const csp = response.headers.get('content-security-policy') ?? '';
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script');
    const asset = /src="(\/console\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    assert.ok(asset, 'the page loads a bundled script');
    const js = await fetch(`${base}${asset}`);
    await js.arrayBuffer();
    assert.match(js.headers.get('cache-control') ?? '', /immutable/);
    assert.ok(!/https?:\/\/(?!127\.0\.0\.1)/.test(html), 'no external URL (CDN) in the page');

    await page.goto(`${base}/console`);
    await page.waitForSelector('#signin-token');
    const fcp = await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1);
    console.log(`# first contentful paint: ${fcp.toFixed(0)} ms`);
    assert.ok(fcp > 0 && fcp < 1000, `first paint ${fcp} ms`);
  });

  it('signs in with a token (a wrong one is refused) and keeps it in sessionStorage only', async () => {
    await page.fill('#signin-token', 'not-a-token');
    await page.click('#signin button[type=submit]');
    await page.waitForSelector('#signin-error:not(:empty)');
    await page.fill('#signin-token', ids.A.token);
    await page.click('#signin button[type=submit]');
    await page.waitForSelector('#file-input', { state: 'attached' });
    await page.waitForSelector('#live-state.on', { timeout: 10_000 });
    assert.equal(await page.textContent('#who'), `project ${ids.A.project_id}`);
    const stored = await page.evaluate(() => ({ session: JSON.stringify(sessionStorage), local: JSON.stringify(localStorage), cookie: document.cookie, url: location.href }));
    assert.ok(stored.session.includes(ids.A.token));
    assert.ok(!stored.local.includes(ids.A.token) && !stored.cookie.includes(ids.A.token) && !stored.url.includes(ids.A.token));
  });

  it('uploads a qcow2 by the file picker and follows it live to active (screenshot of the upload in progress)', async () => {
    const qcow2 = await makeImage(dir, 'qcow2', { size: '64M', name: 'console-good.qcow2' });
    // A slow link for the screenshot of a moving progress bar (Chromium's network throttling).
    const big = join(dir, 'console-big.img');
    await writeFile(big, Buffer.alloc(6 << 20, 1));
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 2 << 20 });
    await page.setInputFiles('#file-input', [big, qcow2]);
    await page.waitForFunction(() => {
      const p = document.querySelector('.upload-item[data-phase="uploading"] progress') as HTMLProgressElement | null;
      return p !== null && p.value > 5 && p.value < 90;
    }, undefined, { timeout: 20_000 });
    assert.match(await page.textContent('.upload-item[data-phase="uploading"] .u-stats') ?? '', /\/s · ETA/);
    await page.screenshot({ path: join(logDir, 'console-upload-in-progress.png'), fullPage: true });
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await page.waitForSelector('.upload-item[data-phase="done"] >> text=console-good.qcow2', { timeout: 60_000 });
    goodId = await page.getAttribute('.upload-item:has-text("console-good.qcow2")', 'data-image') ?? '';
    assert.ok(goodId);
    const image = await new PirClient(base, ids.A.token).getImage(goodId);
    assert.equal(image.body.status, 'active');
    assert.equal(image.body.disk_format, 'qcow2');
    // The list shows it active without a reload (live events).
    await page.waitForSelector(`#images-list .row[data-id="${goodId}"][data-status="active"]`, { timeout: 10_000 });
    await page.screenshot({ path: join(logDir, 'console-list.png'), fullPage: true });
  });

  it('a hostile qcow2 (backing file) shows its refusal in plain words', async () => {
    const hostile = await makeImage(dir, 'qcow2', { size: '64M', name: 'console-hostile.qcow2', backing: '/etc/passwd', backingFormat: 'raw', unsafe: true });
    await page.setInputFiles('#file-input', [hostile]);
    await page.waitForSelector('.upload-item[data-phase="failed"] >> text=console-hostile.qcow2', { timeout: 60_000 });
    const id = await page.getAttribute('.upload-item:has-text("console-hostile.qcow2")', 'data-image');
    await page.click(`#images-list .row[data-id="${id}"]`);
    await page.waitForSelector('#failure');
    const text = await page.textContent('#failure') ?? '';
    assert.match(text, /Refused/);
    assert.match(text, /backing file/i);
    assert.match(text, /What to do/);
    assert.equal(await page.textContent('#image-status'), 'killed');
  });

  it('edits a property by JSON Patch (image page screenshot)', async () => {
    await page.evaluate((id) => { location.hash = `#/images/${id}`; }, goodId);
    await page.waitForSelector('#timeline .stage[data-status="done"]');
    assert.equal(await page.locator('#timeline .stage').count(), 4, 'four pipeline stages');
    await page.fill('#property-add input[name=key]', 'os_distro');
    await page.fill('#property-add input[name=value]', 'debian');
    await page.click('#property-add button[type=submit]');
    await page.waitForSelector('#properties li[data-prop="os_distro"]');
    await page.fill('#properties li[data-prop="os_distro"] input[name=value]', 'ubuntu');
    await page.click('#properties li[data-prop="os_distro"] button[type=submit]');
    await page.waitForSelector('#image-note >> text=Saved os_distro');
    const image = await new PirClient(base, ids.A.token).getImage(goodId);
    assert.equal(image.body.os_distro, 'ubuntu');
    await page.screenshot({ path: join(logDir, 'console-image-page.png'), fullPage: true });
  });

  it("never shows another project's private image (list, page, live events)", async () => {
    const b = new PirClient(base, ids.B.token);
    const secret = await b.createImage({ name: `b-secret-${randomUUID()}`, disk_format: 'raw', container_format: 'bare', visibility: 'private' });
    await b.call('PUT', `/v2/images/${secret.id}/tags/still-secret`);
    await page.evaluate(() => { location.hash = '#/'; });
    await page.waitForSelector(`#images-list .row[data-id="${goodId}"]`);
    await page.selectOption('#filters select[name=visibility]', 'all');
    await page.click('#filters button[type=submit]');
    await page.waitForSelector(`#images-list .row[data-id="${goodId}"]`);
    assert.equal(await page.locator(`[data-id="${secret.id}"]`).count(), 0);
    assert.ok(!(await page.content()).includes(secret.id));
    await page.evaluate((id) => { location.hash = `#/images/${id}`; }, secret.id);
    await page.waitForSelector('#image-error');
    assert.match(await page.textContent('#image-error') ?? '', /No such image/);
  });

  it('searches by keyword (when declared by this PIR)', async (t) => {
    if (!features.search) return t.skip('this PIR refuses ?q=…&sort=relevance (no keyword search)');
    await page.evaluate(() => { location.hash = '#/'; });
    await page.fill('#search', 'console-good');
    await page.click('#filters button[type=submit]');
    await page.waitForSelector(`#images-list .row[data-id="${goodId}"]`);
    assert.equal(await page.locator('#images-list a.row').count(), 1);
  });

  it('navigates galleries (when declared by this PIR)', async (t) => {
    if (!features.galleries) return t.skip('this PIR declares no galleries (/v2/schemas/galleries, /v2/galleries)');
    const a = new PirClient(base, ids.A.token);
    const g = await a.call('POST', '/v2/galleries', { name: `console-${randomUUID().slice(0, 8)}` });
    assert.equal(g.status, 201);
    assert.equal((await a.call('PATCH', `/v2/images/${goodId}`, [{ op: 'add', path: '/pir_gallery_id', value: g.body.id }], { 'content-type': 'application/openstack-images-v2.1-json-patch' })).status, 200);
    await page.evaluate(() => { location.hash = '#/'; });
    await page.reload();
    await page.click(`#gallery-tree button[data-gallery="${g.body.id}"]`);
    await page.waitForSelector(`#images-list .row[data-id="${goodId}"]`);
    assert.equal(await page.locator('#images-list a.row').count(), 1);
  });

  it('creates a share link and uses it in a fresh browser context (when declared by this PIR)', async (t) => {
    if (!features.shareLinks) return t.skip('this PIR declares no share links (/v2/schemas/share-links)');
    await page.evaluate((id) => { location.hash = `#/images/${id}`; }, goodId);
    await page.click('#share-create');
    const url = await page.inputValue('#share-url');
    const fresh = await browser!.newContext();
    const response = await fresh.request.get(url);
    assert.equal(response.status(), 200);
    assert.equal((await response.body()).length, (await new PirClient(base, ids.A.token).getImage(goodId)).body.size);
    await fresh.close();
  });

  it('resumes a cut upload after a reload (when this PIR speaks tus)', async (t) => {
    if (!features.tus) return t.skip('this PIR has no tus endpoint (OPTIONS /v2/images/{id}/uploads without Tus-Version)');
    const file = join(dir, 'console-resume.img');
    await writeFile(file, Buffer.alloc(24 << 20, 3));
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 4 << 20 });
    await page.evaluate(() => { location.hash = '#/'; });
    await page.setInputFiles('#file-input', [file]);
    await page.waitForFunction(() => ((document.querySelector('.upload-item[data-phase="uploading"] progress') as HTMLProgressElement | null)?.value ?? 0) > 30, undefined, { timeout: 30_000 });
    await page.reload(); // cuts the upload mid-way
    await page.waitForSelector('#pending-uploads');
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await page.setInputFiles('#file-input', [file]);
    await page.waitForSelector('.upload-item[data-phase="done"]', { timeout: 60_000 });
  });

  it('signs out and forgets the token', async () => {
    await page.click('#signout');
    await page.waitForSelector('#signin-token');
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    await page.reload();
    await page.waitForSelector('#signin-token');
  });
});
