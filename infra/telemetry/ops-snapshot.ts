/**
 * What the ops page shows, read from the shared stores (so any API process shows the whole
 * deployment): images by status, queues, live processes, recent and failed images with their
 * per-stage timeline, and stage latency percentiles over recent imports.
 */
import type { JobQueue, ListQuery, ManifestStore, QueueStats } from '../../core/ports.js';
import { STAGES, type ImageDoc, type ImageStatus, type StageName, type StageProgress } from '../../schemas/image.js';
import { ingestedBytes, servedBytes } from './metrics.js';
import type { ProcessInfo, ProcessRegistry } from './process-registry.js';

export interface ImageSummary {
  id: string;
  name: string | null;
  status: ImageStatus;
  owner: string | null;
  disk_format: string | null;
  size: number | null;
  created_at: string;
  updated_at: string;
  failure: ImageDoc['failure'];
  pipeline: { run: number; method: string; started_at: string; stages: Record<StageName, StageProgress> } | null;
}

export interface OpsSnapshot {
  at: string;
  statuses: Record<ImageStatus, number>;
  queues: QueueStats[];
  processes: ProcessInfo[];
  /** This process's counters (each API process counts its own bytes). */
  counters: { ingested_bytes: number; served_bytes: number };
  stage_latency_ms: Record<StageName, { p50: number | null; p95: number | null; n: number }>;
  recent: ImageSummary[];
  failed: ImageSummary[];
}

const RECENT = 25;
const SAMPLE = 200;

export async function opsSnapshot(store: ManifestStore, queue: JobQueue, registry: ProcessRegistry | null): Promise<OpsSnapshot> {
  const [statuses, queues, processes, recent, failed, ingested, served] = await Promise.all([
    store.countByStatus(),
    queue.stats().catch(() => [] as QueueStats[]),
    registry?.alive() ?? Promise.resolve([]),
    store.list(everything({}, SAMPLE)),
    store.list(everything({ status: ['killed'] }, RECENT)),
    ingestedBytes.get(),
    servedBytes.get(),
  ]);
  return {
    at: new Date().toISOString(),
    statuses,
    queues,
    processes,
    counters: { ingested_bytes: ingested.values[0]?.value ?? 0, served_bytes: served.values[0]?.value ?? 0 },
    stage_latency_ms: percentiles(recent),
    recent: recent.slice(0, RECENT).map(summary),
    failed: failed.map(summary),
  };
}

/** Every project's images, newest change first (the dashboard is admin only). */
function everything(where: ListQuery['where'], limit: number): ListQuery {
  return { scope: { project_id: 'admin', admin: true }, visibility: 'all', memberStatus: 'all', where, sort: [{ key: 'updated_at', dir: 'desc' }], limit };
}

export function summary(doc: ImageDoc): ImageSummary {
  return {
    id: doc.id,
    name: doc.name,
    status: doc.status,
    owner: doc.owner,
    disk_format: doc.disk_format,
    size: doc.size,
    created_at: doc.created_at,
    updated_at: doc.updated_at,
    failure: doc.failure,
    pipeline: doc.pipeline ? { run: doc.pipeline.run, method: doc.pipeline.method, started_at: doc.pipeline.started_at, stages: doc.pipeline.stages } : null,
  };
}

function percentiles(docs: ImageDoc[]): OpsSnapshot['stage_latency_ms'] {
  const out = {} as OpsSnapshot['stage_latency_ms'];
  for (const stage of STAGES) {
    const values = docs.map((d) => d.pipeline?.stages[stage]?.duration_ms).filter((v): v is number => typeof v === 'number').sort((a, b) => a - b);
    const at = (q: number) => (values.length ? values[Math.min(values.length - 1, Math.floor(q * values.length))]! : null);
    out[stage] = { p50: at(0.5), p95: at(0.95), n: values.length };
  }
  return out;
}
