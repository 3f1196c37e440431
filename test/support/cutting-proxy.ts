/** A TCP proxy that cuts connections at chosen points: resumable clients must survive it. */
import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy to PIR that cuts the connection (both ways) once the client has sent each of the
 * given byte count on it, one cut per threshold; then connections pass untouched. Given several
 * target ports, new connections go to the first until the first cut, then to the next one, and so
 * on round (a client resuming after a cut lands on another API process).
 */
export async function cuttingProxy(target: number | number[], cutAfter: number[]): Promise<{ port: number; cuts(): number; connections(): number; close(): Promise<void> }> {
  const pending = [...cutAfter];
  const targets = Array.isArray(target) ? target : [target];
  let cuts = 0;
  let connections = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    connections += 1;
    const upstream = connect(targets[cuts % targets.length]!, '127.0.0.1');
    sockets.add(client); sockets.add(upstream);
    let sent = 0;
    client.on('data', (chunk: Buffer) => {
      sent += chunk.length;
      // The next threshold applies to whichever connection (keep-alive or new) gets that far.
      const limit = pending[0];
      if (limit !== undefined && sent >= limit) {
        pending.shift();
        upstream.write(chunk.subarray(0, chunk.length - (sent - limit)));
        cuts += 1;
        client.destroy();
        setTimeout(() => upstream.destroy(), 20);
        return;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => { if (!client.destroyed) client.write(chunk); });
    const end = () => { client.destroy(); upstream.destroy(); };
    client.on('error', end); upstream.on('error', end);
    client.on('close', () => setTimeout(() => upstream.destroy(), 20)); upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    cuts: () => cuts,
    connections: () => connections,
    close: async () => { for (const s of sockets) s.destroy(); await new Promise((r) => server.close(r)); },
  };
}

