/**
 * README: PIR_UPLOAD_IDLE_SECONDS bounds a web-download whose server goes silent, as it bounds an
 * upload's client. An embedded PIR (in-process) with a 1 s limit, against a server that never
 * answers (the egress client's own idle timeout, 60 s, held it that long) and one that stops in
 * the middle of the body (staging's wait ended it, as a fault, download_failed): both kill the
 * image with `timeout` within seconds.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { loadConfig, webDownloadEgress } from '../../../infra/config.js';
import { startPir, type RunningPir } from '../../../infra/runtime.js';

const ADMIN = 'admin-token-for-web-download-idle-0123';

describe('web-download: a silent server and PIR_UPLOAD_IDLE_SECONDS', () => {
  let dir: string;
  let pir: RunningPir;
  let silent: http.Server;
  let port: number;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pir-wd-idle-'));
    silent = http.createServer((req, res) => {
      if (req.url === '/never') return; // the connection taken, nothing ever answered
      res.writeHead(200, { 'content-length': String(1 << 20) });
      res.write(Buffer.alloc(4096)); // then nothing, the connection left open
    });
    silent.listen(0, '127.0.0.1');
    await new Promise((r) => silent.once('listening', r));
    port = (silent.address() as { port: number }).port;
    const config = loadConfig({ PIR_DATA_DIR: dir, PIR_PORT: '0', PIR_ADMIN_TOKEN: ADMIN, PIR_UPLOAD_IDLE_SECONDS: '1', PIR_EGRESS_ALLOWLIST: `127.0.0.1:${port}` });
    pir = await startPir(config, { api: true, worker: true }, pino({ level: 'silent' }));
  });
  after(async () => {
    silent.closeAllConnections();
    silent.close();
    await pir.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('takes its idle timeout from PIR_UPLOAD_IDLE_SECONDS, never longer than the whole deadline', () => {
    assert.equal(webDownloadEgress(loadConfig({ PIR_UPLOAD_IDLE_SECONDS: '7' })).idleTimeoutMs, 7000);
    assert.equal(webDownloadEgress(loadConfig({ PIR_UPLOAD_IDLE_SECONDS: '600', PIR_EGRESS_TIMEOUT_SECONDS: '120' })).idleTimeoutMs, 120_000);
    assert.equal(loadConfig({ PIR_UPLOAD_IDLE_SECONDS: '7' }).egress.idleTimeoutMs, 60_000, 'the other egress users keep theirs');
  });

  for (const path of ['/never', '/stops']) it(`kills the image with timeout once the server was silent that long (${path})`, async () => {
    const headers = { 'x-auth-token': ADMIN, 'content-type': 'application/json' };
    const created = await pir.app!.inject({ method: 'POST', url: '/v2/images', headers, payload: { name: 'wd', disk_format: 'raw', container_format: 'bare' } });
    const id = created.json().id as string;
    const started = Date.now();
    const imported = await pir.app!.inject({ method: 'POST', url: `/v2/images/${id}/import`, headers, payload: { method: { name: 'web-download', uri: `http://127.0.0.1:${port}${path}` } } });
    assert.equal(imported.statusCode, 202, imported.body);
    let image: { status: string; pir_failure?: { code: string; message: string } } = { status: '' };
    while (Date.now() - started < 15_000) {
      image = (await pir.app!.inject({ url: `/v2/images/${id}`, headers })).json();
      if (image.status === 'killed') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(image.status, 'killed', `still ${image.status} after ${Date.now() - started} ms`);
    assert.equal(image.pir_failure?.code, 'timeout', image.pir_failure?.message);
    assert.ok(Date.now() - started < 10_000, `killed after ${Date.now() - started} ms`);
  });
});
