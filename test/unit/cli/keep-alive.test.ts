/**
 * The client's keep-alive connections (client/http.ts): an idle one is dropped before the server
 * would close it, so no request is sent on a connection the server is closing (ECONNRESET).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { FREE_SOCKET_IDLE_MS, Transport } from '../../../client/http.js';

async function listening(keepAliveTimeout: number): Promise<{ server: Server; transport: Transport; connections: () => number }> {
  let connections = 0;
  const server = createServer((_request, response) => response.end('{}'));
  server.keepAliveTimeout = keepAliveTimeout;
  server.on('connection', () => { connections += 1; });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  return { server, transport: new Transport(`http://127.0.0.1:${port}`, null), connections: () => connections };
}

describe('client keep-alive connections', () => {
  const servers: Server[] = [];
  after(() => { for (const server of servers) server.close(); });

  it('reuses a connection at once, and not once it has been idle for FREE_SOCKET_IDLE_MS (PIR keeps its own for 65 s)', async () => {
    const { server, transport, connections } = await listening(65_000);
    servers.push(server);
    assert.equal((await transport.call('GET', '/a')).status, 200);
    assert.equal((await transport.call('GET', '/b')).status, 200);
    assert.equal(connections(), 1, 'the second request went on the first connection');
    await sleep(FREE_SOCKET_IDLE_MS + 400);
    assert.equal((await transport.call('GET', '/c')).status, 200);
    assert.equal(connections(), 2, 'the idle connection was let go before the next request');
    server.closeAllConnections();
  });

  it("lets an idle connection go a second before the server's Keep-Alive hint runs out, when that is sooner", async () => {
    const { server, transport, connections } = await listening(2_000); // answers Keep-Alive: timeout=2
    servers.push(server);
    assert.equal((await transport.call('GET', '/a')).status, 200);
    await sleep(1_300);
    assert.equal((await transport.call('GET', '/b')).status, 200);
    assert.equal(connections(), 2);
    server.closeAllConnections();
  });
});
