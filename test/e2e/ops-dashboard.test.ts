/**
 * The ops dashboard in headless Chromium (Debian's chromium, driven by playwright-core) against
 * a real `pir serve`: it signs in, shows a finished image's per-stage waterfall with a trace
 * link, and a killed image's reason; the image rows open by keyboard too; names with bidi and
 * control characters show them as escapes; a screenshot is saved beside the test logs.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { makeTempDir, removeDir } from '../support/images.js';
import { PirClient } from '../support/pir-client.js';
import { freePort, startPirProcess, testLogDir, type PirProcess } from '../support/pir-process.js';
import { inCI } from '../support/services.js';

const logDir = testLogDir('ops-dashboard');
const TOKEN = 'e2e-dashboard-token-0123456789abcdef012345';
const CHROMIUM = process.env.PIR_TEST_CHROMIUM || '/usr/bin/chromium';
const missing = !existsSync(CHROMIUM);
if (missing && !inCI) console.log(`# ops dashboard e2e skipped: no Chromium at ${CHROMIUM} (apt-get install chromium)`);

describe('ops dashboard in a browser', { skip: missing && !inCI ? `no Chromium at ${CHROMIUM}` : false }, () => {
  let pir: PirProcess | undefined;
  let browser: Browser | undefined;
  let dir = '';
  after(async () => {
    await browser?.close();
    await pir?.stop();
    if (dir) await removeDir(dir);
  });

  it('signs in, shows a finished image timeline and a killed image reason', async () => {
    if (missing) throw new Error(`CI is set but Chromium is missing at ${CHROMIUM}: apt-get install chromium`);
    dir = await makeTempDir('pir-e2e-ops-page-');
    const port = await freePort();
    pir = await startPirProcess('serve', { PIR_DATA_DIR: join(dir, 'data'), PIR_PORT: String(port), PIR_ADMIN_TOKEN: TOKEN, PIR_TRACE_UI_URL: 'http://jaeger.example:16686' }, logDir, 'serve');
    const base = `http://127.0.0.1:${port}`;
    const client = new PirClient(base, TOKEN);
    const good = await client.createImage({ name: 'good-raw', disk_format: 'raw', container_format: 'bare' });
    await writeFile(join(dir, 'good.raw'), Buffer.alloc(1024 * 1024, 7));
    assert.equal((await client.putData(good.id, join(dir, 'good.raw'))).status, 204);
    const bad = await client.createImage({ name: 'not-a-qcow2', disk_format: 'qcow2', container_format: 'bare' });
    await writeFile(join(dir, 'bad.qcow2'), Buffer.alloc(1024 * 1024, 9));
    const refused = await client.putData(bad.id, join(dir, 'bad.qcow2'));
    assert.equal(refused.status, 415);
    const killed = await client.waitSettled(bad.id);
    assert.equal(killed.status, 'killed');
    // A name that a right-to-left override would draw as "safeexe.jpg", and one with BEL.
    const spoof = await client.createImage({ name: 'safe\u202Egpj.exe\u202C', disk_format: 'raw', container_format: 'bare' });
    const bell = await client.createImage({ name: 'ring\u0007bell', disk_format: 'raw', container_format: 'bare' });

    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${base}/ops`);
    await page.fill('#token', 'wrong-token');
    await page.click('#login button[type=submit]');
    await page.waitForSelector('#login-error:not(:empty)');
    assert.match(await page.textContent('#login-error') ?? '', /token/i);

    await page.fill('#token', TOKEN);
    await page.click('#login button[type=submit]');
    await page.waitForSelector(`#recent tr[data-id="${good.id}"]`, { timeout: 15_000 });
    assert.equal(await page.evaluate(() => sessionStorage.getItem('pir-token')), TOKEN);
    assert.ok(await page.locator('#chart-status .uplot').count() === 1, 'the status chart is drawn by uPlot');

    await page.click(`#recent tr[data-id="${good.id}"]`);
    await page.waitForSelector('#detail:not([hidden]) .wf-row');
    assert.equal(await page.locator('#waterfall .wf-row').count(), 4);
    assert.equal(await page.locator('#waterfall .wf-bar.done').count(), 4, 'four finished stage bars');
    const href = await page.getAttribute('#detail-trace a', 'href');
    assert.ok(href?.startsWith('http://jaeger.example:16686/search?') && href.includes(encodeURIComponent(good.id)), href ?? 'no trace link');

    await page.click(`#failed tr[data-id="${bad.id}"]`);
    await page.waitForFunction((id) => document.getElementById('detail-title')?.textContent?.includes(id), bad.id);
    const reason = await page.textContent('#detail-failure');
    assert.match(reason ?? '', new RegExp(`Failed at ${killed.failure?.stage ?? 'inspect'}: ${killed.failure?.code ?? ''}`));
    assert.match(await page.textContent(`#waterfall .wf-row[data-stage="${killed.failure?.stage ?? 'inspect'}"] .wf-time`) ?? '', /^failed \d/, 'the failed stage shows how long it ran');

    // Hidden characters are shown, not obeyed: the spoofed name reads as it is stored.
    await page.waitForSelector(`#recent tr[data-id="${spoof.id}"]`);
    assert.equal(await page.textContent(`#recent tr[data-id="${spoof.id}"] td:first-child`), 'safe⟨U+202E⟩gpj.exe⟨U+202C⟩');
    assert.equal(await page.textContent(`#recent tr[data-id="${bell.id}"] td:first-child`), 'ring⟨U+0007⟩bell');
    assert.equal(await page.locator(`#recent tr[data-id="${spoof.id}"] td:first-child bdi`).count(), 1, 'the name is isolated from the text around it');
    assert.ok(!/[\u202a-\u202e\u0007]/.test(await page.textContent('#recent') ?? ''), 'no raw control character in the table');

    // By keyboard: Tab reaches the rows (focus drawn, an accessible name), the focus survives a snapshot, Enter and Space open.
    const goodRow = `#recent tr[data-id="${good.id}"]`;
    assert.equal(await page.getAttribute(goodRow, 'tabindex'), '0');
    assert.match(await page.getAttribute(goodRow, 'aria-label') ?? '', /^good-raw, active: open/);
    await page.focus('#logout');
    for (let i = 0; i < 40 && !(await page.evaluate((sel) => document.activeElement === document.querySelector(sel), goodRow)); i++) await page.keyboard.press('Tab');
    assert.ok(await page.evaluate((sel) => document.activeElement === document.querySelector(sel), goodRow), 'Tab reaches the image row');
    assert.notEqual(await page.evaluate((sel) => getComputedStyle(document.querySelector(sel)!).outlineStyle, goodRow), 'none', 'the focused row is outlined');
    await page.waitForTimeout(2500); // a snapshot rebuilds the rows
    assert.ok(await page.evaluate((sel) => document.activeElement === document.querySelector(sel), goodRow), 'the focus stays on the row across a snapshot');
    await page.keyboard.press('Enter');
    await page.waitForFunction((id) => document.getElementById('detail-title')?.textContent?.includes(id), good.id);
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'detail-title', 'the opened view takes the focus');
    await page.focus(`#failed tr[data-id="${bad.id}"]`);
    await page.keyboard.press(' ');
    await page.waitForFunction((id) => document.getElementById('detail-title')?.textContent?.includes(id), bad.id);
    await page.waitForTimeout(2500); // one more snapshot: the charts have two points
    const shot = join(logDir, 'ops-dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`# screenshot: ${shot}`);
    assert.deepEqual(errors, [], 'no script errors');
  });
});
