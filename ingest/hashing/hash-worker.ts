/**
 * Hash worker: holds any number of running digests (one per stream) and updates them from
 * shared-memory slots the main thread fills. One message in, one reply out, in order.
 *
 * Protocol (see pool.ts): requests are `WorkerRequest`, replies are `WorkerReply`.
 */
import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import type { WorkerReply, WorkerRequest } from './protocol.js';

if (!parentPort) throw new Error('hash-worker must run in a worker thread');
const port = parentPort;
const streams = new Map<number, Hash>();

port.on('message', (m: WorkerRequest) => {
  let reply: WorkerReply;
  try {
    switch (m.t) {
      case 'u': {
        // A stream may have been dropped (abort) while its updates were queued: still reply,
        // so the main thread can free the slot.
        const h = streams.get(m.s);
        if (h) h.update(new Uint8Array(m.b, m.o, m.n));
        reply = m.j;
        break;
      }
      case 'o':
        streams.set(m.s, createHash(m.a));
        reply = m.j;
        break;
      case 'd': {
        const h = streams.get(m.s);
        if (!h) throw new Error(`hash stream ${m.s} is not open`);
        streams.delete(m.s);
        reply = { j: m.j, d: h.digest('hex') };
        break;
      }
      case 'x':
        streams.delete(m.s);
        reply = m.j;
        break;
    }
  } catch (err) {
    streams.delete(m.s);
    reply = { j: m.j, e: err instanceof Error ? err.message : String(err) };
  }
  port.postMessage(reply);
});
