/**
 * A TCP forwarder in front of a real service, which a test opens and cuts: while cut, every open
 * connection is dropped and new ones are reset as they arrive (a service down or restarting).
 * Stalled, it forwards nothing and closes nothing (a network that silently drops packets).
 * The port stays bound throughout. Closing it instead would leave a loopback port in the
 * ephemeral range free while PIR keeps connecting to it, and a connect whose own source port is
 * that port connects to itself (TCP simultaneous open): a Mongo client then waits forever for an
 * answer to its own request.
 */
import { connect, createServer, type Socket } from 'node:net';

export interface TcpForwarder {
  port: number;
  open(): void;
  cut(): void;
  stall(): void;
  close(): Promise<void>;
}

export async function tcpForwarder(target: { host: string; port: number }, options: { open?: boolean } = {}): Promise<TcpForwarder> {
  let isOpen = options.open ?? false;
  let stalled = false;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    if (stalled) {
      sockets.add(client);
      client.on('close', () => sockets.delete(client));
      return void client.pause();
    }
    if (!isOpen) return void client.resetAndDestroy();
    const upstream = connect(target.port, target.host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
    const end = () => { client.destroy(); upstream.destroy(); };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const dropAll = () => { for (const s of sockets) s.destroy(); };
  return {
    port: (server.address() as { port: number }).port,
    open: () => { isOpen = true; },
    cut: () => { isOpen = false; dropAll(); },
    stall: () => {
      stalled = true;
      for (const s of sockets) {
        s.unpipe();
        s.pause();
      }
    },
    close: async () => {
      isOpen = false;
      dropAll();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
