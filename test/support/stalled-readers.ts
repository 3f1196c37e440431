/**
 * Two clients of one large answer: one that stops reading at once, and one that takes what has
 * arrived ten times a second. For the send-stall guard (api/send-stall.ts): the first must be
 * cut off within a few of its periods, the second never.
 */
import assert from 'node:assert/strict';
import { connect, type Server, type Socket } from 'node:net';

/** Sends `request` (a whole HTTP/1.1 request) twice, then checks after `waitMs` which server side was closed. */
export async function assertStalledReaderCut(server: Server, port: number, request: string, waitMs = 3000): Promise<void> {
  const sockets: Socket[] = [];
  const onConnection = (s: Socket) => sockets.push(s);
  server.on('connection', onConnection);
  const open = (): Promise<Socket> => new Promise((resolve) => {
    const c = connect(port, '127.0.0.1', () => {
      c.write(request);
      c.pause();
      resolve(c);
    });
  });
  const stalled = await open();
  const slow = await open();
  const reading = setInterval(() => { slow.resume(); setTimeout(() => slow.pause(), 2); }, 100);
  try {
    await new Promise((r) => setTimeout(r, waitMs));
    const [stalledServer, slowServer] = sockets;
    assert.ok(stalledServer!.destroyed, 'the stalled reader was cut off');
    assert.ok(!slowServer!.destroyed, 'the slow reader was not');
    assert.ok(slowServer!.bytesWritten > 0);
  } finally {
    server.off('connection', onConnection);
    clearInterval(reading);
    stalled.destroy();
    slow.destroy();
  }
}
