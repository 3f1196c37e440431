/**
 * The upload queue: each file becomes an image (POST /v2/images), then its bytes go up, one file
 * at a time, by tus (resumable, when PIR speaks it) or by a plain PUT /file with progress.
 * Progress, rate and ETA come from the transport's progress events. What an interrupted upload
 * needs to be resumed after a reload (image id, tus URL, the file's name/size/date: no token) is
 * kept in localStorage until it finishes.
 */
import * as tus from 'tus-js-client';
import { ApiError, currentToken, sendJson, type Image } from './api';

export type UploadPhase = 'waiting' | 'creating' | 'uploading' | 'processing' | 'done' | 'failed';
export interface UploadItem {
  key: string; file: File; name: string; imageId: string | null; phase: UploadPhase;
  sent: number; total: number; rate: number; etaSeconds: number | null; error: string | null; resumable: boolean;
}
interface Pending { imageId: string; uploadUrl: string | null; name: string; size: number; lastModified: number }

const PENDING_KEY = 'pir-console-pending-uploads';
const FORMATS: Record<string, [string, string]> = {
  qcow2: ['qcow2', 'bare'], img: ['raw', 'bare'], raw: ['raw', 'bare'], iso: ['iso', 'bare'], vmdk: ['vmdk', 'bare'], vhd: ['vhd', 'bare'],
  vhdx: ['vhdx', 'bare'], vdi: ['vdi', 'bare'], ova: ['vmdk', 'ova'], ploop: ['ploop', 'bare'], qed: ['qed', 'bare'],
};
export const formatsFor = (fileName: string): [string, string] => FORMATS[fileName.split('.').pop()?.toLowerCase() ?? ''] ?? ['raw', 'bare'];

export function pendingUploads(): Pending[] {
  try {
    const list = JSON.parse(localStorage.getItem(PENDING_KEY) ?? '[]') as Pending[];
    return Array.isArray(list) ? list : [];
  } catch {
    return [];
  }
}
function savePending(list: Pending[]): void {
  if (list.length) localStorage.setItem(PENDING_KEY, JSON.stringify(list));
  else localStorage.removeItem(PENDING_KEY);
}
const samePending = (a: Pending, f: File) => a.name === f.name && a.size === f.size && a.lastModified === f.lastModified;
function remember(p: Pending): void {
  savePending([...pendingUploads().filter((x) => x.imageId !== p.imageId), p]);
}
export function forgetPending(imageId: string): void {
  savePending(pendingUploads().filter((x) => x.imageId !== imageId));
}

/** Rate over the last seconds (a moving window), and the ETA it gives. */
class RateMeter {
  private samples: [number, number][] = [];
  sample(bytes: number): number {
    const now = performance.now();
    this.samples.push([now, bytes]);
    while (this.samples.length > 2 && now - this.samples[0]![0] > 5000) this.samples.shift();
    const [t0, b0] = this.samples[0]!;
    return now - t0 > 200 ? ((bytes - b0) * 1000) / (now - t0) : 0;
  }
}

export class UploadQueue {
  items: UploadItem[] = [];
  private listeners = new Set<() => void>();
  private running = false;

  constructor(private readonly tusAvailable: () => boolean) {}

  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => { this.listeners.delete(fn); };
  }
  private changed(): void {
    this.items = [...this.items];
    for (const fn of this.listeners) fn();
  }
  private update(item: UploadItem, patch: Partial<UploadItem>): void {
    Object.assign(item, patch);
    this.changed();
  }

  add(files: Iterable<File>): void {
    for (const file of files) {
      // A file that matches an interrupted upload resumes it (same image) instead of creating another.
      const pending = pendingUploads().find((p) => samePending(p, file));
      this.items.push({ key: crypto.randomUUID(), file, name: file.name, imageId: pending?.imageId ?? null, phase: 'waiting', sent: 0, total: file.size, rate: 0, etaSeconds: null, error: null, resumable: false });
    }
    this.changed();
    void this.run();
  }

  /** The pipeline told us (live events) that an image settled. */
  settled(image: Image): void {
    for (const item of this.items) {
      if (item.imageId !== image.id || item.phase !== 'processing') continue;
      if (image.status === 'active') this.update(item, { phase: 'done' });
      else if (image.status === 'killed') this.update(item, { phase: 'failed', error: image.pir_failure?.message ?? 'refused by the pipeline' });
    }
  }

  private async run(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (let item = this.next(); item; item = this.next()) await this.upload(item);
    } finally {
      this.running = false;
    }
  }
  private next(): UploadItem | undefined {
    return this.items.find((i) => i.phase === 'waiting');
  }

  private async upload(item: UploadItem): Promise<void> {
    try {
      if (!item.imageId) {
        this.update(item, { phase: 'creating' });
        const [disk_format, container_format] = formatsFor(item.file.name);
        const image = await sendJson<Image>('POST', '/v2/images', { name: item.file.name, disk_format, container_format, visibility: 'private' });
        item.imageId = image!.id;
      }
      const base: Pending = { imageId: item.imageId, uploadUrl: null, name: item.file.name, size: item.file.size, lastModified: item.file.lastModified };
      const previous = pendingUploads().find((p) => p.imageId === item.imageId);
      remember({ ...base, uploadUrl: previous?.uploadUrl ?? null });
      this.update(item, { phase: 'uploading', resumable: this.tusAvailable() });
      if (this.tusAvailable()) await this.byTus(item, previous?.uploadUrl ?? null);
      else await this.byPut(item);
      forgetPending(item.imageId);
      // The bytes are in; the pipeline's live events say when it is active or killed.
      if (item.phase === 'uploading') this.update(item, { phase: 'processing', sent: item.total, etaSeconds: 0 });
    } catch (e) {
      this.update(item, { phase: 'failed', error: e instanceof Error ? e.message : String(e) });
    }
  }

  private progress(item: UploadItem, meter: RateMeter, sent: number): void {
    const rate = meter.sample(sent);
    this.update(item, { sent, rate, etaSeconds: rate > 0 ? (item.total - sent) / rate : null });
  }

  /** PUT /file with Prefer: respond-async: 202 once staged, the pipeline then runs on its own. */
  private byPut(item: UploadItem): Promise<void> {
    const meter = new RateMeter();
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('PUT', `/v2/images/${encodeURIComponent(item.imageId!)}/file`);
      xhr.setRequestHeader('X-Auth-Token', currentToken());
      xhr.setRequestHeader('Content-Type', 'application/octet-stream');
      xhr.setRequestHeader('Prefer', 'respond-async');
      xhr.upload.onprogress = (e) => this.progress(item, meter, e.loaded);
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) return resolve();
        let message = `HTTP ${xhr.status}`;
        try { message = (JSON.parse(xhr.responseText) as { error: { message: string } }).error.message; } catch { /* not PIR's JSON */ }
        // A refused image (400) is shown with the pipeline's reason once the killed event arrives.
        if (xhr.status === 400) { this.update(item, { phase: 'processing' }); return resolve(); }
        reject(new ApiError(xhr.status, 'upload_failed', message));
      };
      xhr.onerror = () => reject(new Error('the connection broke off; choose the same file again to restart this upload'));
      xhr.send(item.file);
    });
  }

  /** tus 1.0 at /v2/images/{id}/uploads: resumes from the server's offset after a break or a reload. */
  private byTus(item: UploadItem, uploadUrl: string | null): Promise<void> {
    const meter = new RateMeter();
    const endpoint = `/v2/images/${encodeURIComponent(item.imageId!)}/uploads`;
    return new Promise((resolve, reject) => {
      const upload = new tus.Upload(item.file, {
        endpoint, uploadUrl, headers: { 'X-Auth-Token': currentToken() }, chunkSize: 16 * 1024 * 1024,
        retryDelays: [0, 1000, 3000, 5000], storeFingerprintForResuming: false, removeFingerprintOnSuccess: true,
        metadata: { filename: item.file.name },
        onUploadUrlAvailable: () => {
          remember({ imageId: item.imageId!, uploadUrl: upload.url, name: item.file.name, size: item.file.size, lastModified: item.file.lastModified });
        },
        onProgress: (sent) => this.progress(item, meter, sent),
        onSuccess: () => resolve(),
        onError: (error) => reject(error),
      });
      upload.start();
    });
  }
}
