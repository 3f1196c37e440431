/** The download figures' client, run in a process of its own: what it reports of a real GET. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { discardingGetInOwnProcess, loopbackHttpDownload } from '../../../bench/limits.js';

describe('bench download client (own process)', () => {
  it('reads the whole body, sends the headers given, and reports its time and CPU', async () => {
    const seen: (string | undefined)[] = [];
    const block = Buffer.alloc(64 * 1024, 7);
    const server = createServer((req, res) => {
      seen.push(req.headers['x-auth-token'] as string | undefined);
      res.writeHead(200, { 'content-length': String(block.length * 48) });
      for (let i = 0; i < 48; i++) res.write(block);
      res.end();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const { port } = server.address() as AddressInfo;
      const got = await discardingGetInOwnProcess(`http://127.0.0.1:${port}/x`, { 'x-auth-token': 'a=b' });
      assert.equal(got.bytes, 3 * 1024 * 1024);
      assert.ok(got.ms > 0 && got.ms < 30_000, `ms ${got.ms}`);
      assert.ok(got.cpuSeconds > 0 && got.cpuSeconds < 30, `cpu ${got.cpuSeconds}`);
      assert.deepEqual(seen, ['a=b'], 'a header value with "=" arrives whole');
    } finally {
      server.close();
    }
  });

  it('fails with the status when the server does not answer 200', async () => {
    const server = createServer((_req, res) => { res.writeHead(404).end('no'); });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const { port } = server.address() as AddressInfo;
      await assert.rejects(discardingGetInOwnProcess(`http://127.0.0.1:${port}/x`), /answered 404/);
    } finally {
      server.close();
    }
  });

  it('measures the loopback download limit with it', async () => {
    assert.ok((await loopbackHttpDownload(32 * 1024 * 1024)) > 0);
  });
});
