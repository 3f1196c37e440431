/**
 * The ops dashboard in headless Chromium (Debian's chromium, driven by playwright-core) against
 * a real `pir serve`: it signs in, shows a finished image's per-stage waterfall with a trace
 * link, and a killed image's reason; a screenshot is saved beside the test logs.
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
    await page.waitForTimeout(2500); // one more snapshot: the charts have two points
    const shot = join(logDir, 'ops-dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`# screenshot: ${shot}`);
    assert.deepEqual(errors, [], 'no script errors');
  });
});
