/**
 * Closes connections whose reader stopped: a response with bytes waiting to go out and none
 * going out for `stallMs` (nginx's send_timeout). Node's own idle timeout does not see this: it
 * treats a write queue that moved since its last look as activity, so a client that reads
 * nothing keeps a paused listing page or download buffer (megabytes) for twice the idle time.
 *
 * One timer for all connections; progress is libuv's write queue, which shrinks with every byte
 * the kernel takes, so a slow reader that keeps reading is never cut.
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';

interface Pending {
  queued: number;
  since: number;
}

export function closeStalledSends(server: Server, stallMs: number): () => void {
  const watched = new Map<Socket, Pending | null>();
  server.on('connection', (socket: Socket) => {
    watched.set(socket, null);
    socket.once('close', () => watched.delete(socket));
  });
  const timer = setInterval(() => {
    const now = Date.now();
    for (const [socket, last] of watched) {
      const queued = writeQueued(socket);
      if (queued === 0) {
        if (last) watched.set(socket, null);
      } else if (!last || last.queued !== queued) {
        watched.set(socket, { queued, since: now });
      } else if (now - last.since >= stallMs) {
        socket.destroy();
      }
    }
  }, Math.max(100, Math.min(5000, stallMs / 4)));
  timer.unref();
  return () => clearInterval(timer);
}

/** Bytes handed to the socket and not yet taken by the kernel. */
function writeQueued(socket: Socket): number {
  const handle = (socket as Socket & { _handle?: { writeQueueSize?: number } | null })._handle;
  return (handle?.writeQueueSize ?? 0) + socket.writableLength;
}
