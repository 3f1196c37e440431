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


/**
 * A TCP proxy to PIR that stops passing on what a client sends once its connection has sent
 * `after` bytes: the connection stays open, as a stalled network leaves it, so PIR holds the
 * request. When the client goes, its connection to PIR goes too; answers pass untouched.
 */
export async function stallingProxy(target: number, after: number): Promise<{ port: number; stalled(): boolean; close(): Promise<void> }> {
  let stalled = false;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(target, '127.0.0.1');
    sockets.add(client); sockets.add(upstream);
    let sent = 0;
    client.on('data', (chunk: Buffer) => {
      if (sent >= after) return;
      const part = chunk.subarray(0, after - sent);
      sent += part.length;
      upstream.write(part);
      if (sent >= after) stalled = true; // the rest is read and dropped, so that the client's close is seen
    });
    upstream.on('data', (chunk) => { if (!client.destroyed) client.write(chunk); });
    const end = () => { client.destroy(); upstream.destroy(); };
    client.on('error', end); upstream.on('error', end);
    client.on('close', end); upstream.on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    stalled: () => stalled,
    close: async () => { for (const s of sockets) s.destroy(); await new Promise((r) => server.close(r)); },
  };
}
