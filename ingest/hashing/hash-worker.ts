/**
 * Hash worker: holds any number of running digests (one per stream) and updates them from
 * shared-memory slots the main thread fills. Messages are handled in order; "done" replies are
 * batched (the worker drains its queue synchronously and acknowledges a few jobs per message),
 * so the main thread is woken up less often than once per slot.
 *
 * Protocol: requests are `WorkerRequest`, replies `WorkerReply` (protocol.ts).
 */
import { createHash, type Hash } from 'node:crypto';
import { parentPort, receiveMessageOnPort } from 'node:worker_threads';
import type { WorkerReply, WorkerRequest } from './protocol.js';

if (!parentPort) throw new Error('hash-worker must run in a worker thread');
const port = parentPort;
const streams = new Map<number, Hash>();
/** Acknowledge at least every this many jobs, so slots flow back while the queue stays full. */
const ACK_EVERY = 4;

let acks: number[] = [];
function flushAcks(): void {
  if (acks.length === 0) return;
  const reply: WorkerReply = acks.length === 1 ? acks[0]! : acks;
  acks = [];
  port.postMessage(reply);
}

function handle(m: WorkerRequest): void {
  try {
    switch (m.t) {
      case 'u': {
        // A stream may have been dropped (abort) while its updates were queued: still
        // acknowledge, so the main thread can free the slot.
        const h = streams.get(m.s);
        if (h) h.update(new Uint8Array(m.b, m.o, m.n));
        acks.push(m.j);
        break;
      }
      case 'o':
        streams.set(m.s, createHash(m.a));
        acks.push(m.j);
        break;
      case 'd': {
        const h = streams.get(m.s);
        if (!h) throw new Error(`hash stream ${m.s} is not open`);
        streams.delete(m.s);
        flushAcks(); // replies stay in order
        port.postMessage({ j: m.j, d: h.digest('hex') } satisfies WorkerReply);
        break;
      }
      case 'x':
        streams.delete(m.s);
        acks.push(m.j);
        break;
    }
  } catch (err) {
    streams.delete(m.s);
    flushAcks();
    port.postMessage({ j: m.j, e: err instanceof Error ? err.message : String(err) } satisfies WorkerReply);
  }
}

port.on('message', (first: WorkerRequest) => {
  let m: WorkerRequest | undefined = first;
  while (m) {
    handle(m);
    if (acks.length >= ACK_EVERY) flushAcks();
    m = receiveMessageOnPort(port)?.message as WorkerRequest | undefined;
  }
  flushAcks();
});
