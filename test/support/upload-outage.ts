/**
 * Clients uploading in a loop while a service is cut away and opened again (a restart, a
 * failover, a cut network): the outage e2e tests' common part. Each attempt is a create and a
 * PUT of `file`; what every attempt got, and when, is returned with a timeline for messages.
 */
import type { PirClient } from './pir-client.js';
import type { TcpForwarder } from './tcp-forwarder.js';

export interface UploadAttempt { id: string | null; status: number; retryAfter: string | null; code: string | null; startMs: number; endMs: number }

export interface UploadOutage {
  attempts: UploadAttempt[];
  cutMs: number;
  openMs: number;
  /** Where the clients were held (ms from the first request), for a failure's message. */
  timeline(): string;
}

const errorCode = (body: unknown) => (body as { error?: { error_code?: string } } | null)?.error?.error_code ?? null;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * `clients` upload for 2 s, the forwarder is cut for `outageMs` and opened again, and they go on
 * for at least 3 s more, until `recovered(attempts, openMs)` or `recoveryLimitMs` after the
 * opening (a service that has not recovered by then fails the caller's assertions).
 */
export async function uploadThroughOutage(client: PirClient, file: string, forwarder: TcpForwarder, opts: {
  clients: number; outageMs: number; recoveryLimitMs: number; recovered(attempts: UploadAttempt[], openMs: number): boolean;
}): Promise<UploadOutage> {
  const attempts: UploadAttempt[] = [];
  let stop = false;
  const startedAt = Date.now();
  const now = () => Date.now() - startedAt;
  const uploader = async () => {
    while (!stop) {
      const startMs = now();
      const created = await client.call('POST', '/v2/images', { name: 'outage', disk_format: 'raw', container_format: 'bare' });
      if (created.status !== 201) {
        attempts.push({ id: null, status: created.status, retryAfter: created.headers['retry-after'] ?? null, code: errorCode(created.body), startMs, endMs: now() });
        await sleep(200);
        continue;
      }
      const id = (created.body as { id: string }).id;
      const put = await client.putData(id, file);
      attempts.push({ id, status: put.status, retryAfter: put.headers['retry-after'] ?? null, code: put.status < 300 ? null : errorCode(put.body), startMs, endMs: now() });
    }
  };
  const running = Array.from({ length: opts.clients }, uploader);
  await sleep(2000);
  forwarder.cut();
  const cutMs = now();
  await sleep(opts.outageMs);
  forwarder.open();
  const openMs = now();
  while (now() - openMs < 3000 || (!opts.recovered(attempts, openMs) && now() - openMs < opts.recoveryLimitMs)) await sleep(100);
  stop = true;
  await Promise.all(running);
  const timeline = () => `cut at ${cutMs}, open at ${openMs}: ${attempts.map((a) => `${a.startMs}-${a.endMs} ${a.status}${a.code ? ` ${a.code}` : ''}`).join(', ')}`;
  return { attempts, cutMs, openMs, timeline };
}
