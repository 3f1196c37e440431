/** A TCP proxy that cuts connections at chosen points: resumable clients must survive it. */
import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy to PIR that cuts the connection (both ways) once the client has sent each of the
 * given byte count on it, one cut per threshold; then connections pass untouched.
 */
export async function cuttingProxy(target: number, cutAfter: number[]): Promise<{ port: number; cuts(): number; close(): Promise<void> }> {
  const pending = [...cutAfter];
  let cuts = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(target, '127.0.0.1');
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
    close: async () => { for (const s of sockets) s.destroy(); await new Promise((r) => server.close(r)); },
  };
}

