/**
 * PIR_METRICS_PORT: /metrics (and /healthz, /readyz) on a port of their own, without a token,
 * for a Prometheus on the private network; any process role can serve it (workers have no API).
 * A plain node:http server: nothing here needs Fastify's routing, and it keeps the port light.
 */
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import type { Registry } from 'prom-client';
import { registry } from './metrics.js';
import { runChecks, type DependencyCheck } from './health.js';

export interface MetricsServer { url: string; close(): Promise<void> }

export async function startMetricsServer(host: string, port: number, checks: DependencyCheck[], metrics: Registry = registry): Promise<MetricsServer> {
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    const send = (status: number, type: string, body: string) => {
      response.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' }).end(request.method === 'HEAD' ? undefined : body);
    };
    if (request.method !== 'GET' && request.method !== 'HEAD') return send(405, 'text/plain', 'only GET\n');
    if (path === '/metrics') {
      metrics.metrics().then((text) => send(200, metrics.contentType, text), (err: Error) => send(500, 'text/plain', `metrics failed: ${err.message}\n`));
    } else if (path === '/healthz') {
      send(200, 'application/json', JSON.stringify({ status: 'ok' }));
    } else if (path === '/readyz') {
      void runChecks(checks).then((r) => send(r.ok ? 200 : 503, 'application/json', JSON.stringify({ status: r.ok ? 'ready' : 'not_ready', checks: r.checks })));
    } else {
      send(404, 'text/plain', 'try /metrics, /healthz or /readyz\n');
    }
  });
  server.listen(port, host);
  await once(server, 'listening');
  const address = server.address() as { address: string; port: number };
  const shownHost = address.address.includes(':') ? `[${address.address}]` : address.address;
  return {
    url: `http://${shownHost}:${address.port}`,
    close: () => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }),
  };
}
