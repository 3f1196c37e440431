/**
 * `pir job show ID`: the stage timeline of an image's pipeline run (its latest run: PIR keeps
 * the stage timings of the current run on the image), as a table with a small waterfall, or as
 * JSON/YAML. The id is an image id, or a task id `<image>.<run>` as `glance task-list` shows.
 */
import { Command } from 'commander';
import type { Image, StageTiming } from '../client/index.js';
import { STAGES } from '../schemas/image.js';
import { contextOf } from './context.js';
import { NotFoundError } from '../client/index.js';
import { table } from './output.js';

const BAR = 30;

export interface JobTimeline {
  image_id: string;
  run: number;
  method: string;
  status: string;
  stages: ({ stage: string } & StageTiming)[];
  failure: Image['pir_failure'] | null;
}

export function timelineOf(image: Image): JobTimeline | null {
  const p = image.pir_pipeline;
  const failure = image.pir_failure;
  // An import that failed before its bytes were in (web-download, location) has a run but no stages.
  if (!p && failure?.run !== undefined) {
    return { image_id: image.id, run: failure.run, method: failure.method ?? 'import', status: image.status, stages: [], failure };
  }
  if (!p) return null;
  return {
    image_id: image.id, run: p.run, method: p.method, status: image.status,
    stages: STAGES.filter((s) => p.stages[s]).map((s) => ({ stage: s, ...p.stages[s]! })),
    failure: image.pir_failure ?? null,
  };
}

/** Stage rows with a bar placed on the run's time axis. */
export function waterfall(t: JobTimeline): string {
  const ms = (v: string | null | undefined) => (v ? Date.parse(v) : NaN);
  const starts = t.stages.map((s) => ms(s.started_at)).filter(Number.isFinite);
  const ends = t.stages.map((s) => ms(s.ended_at ?? null)).filter(Number.isFinite);
  const t0 = Math.min(...starts);
  const span = Math.max(1, Math.max(...ends, ...starts) - t0);
  const rows = t.stages.map((s) => {
    const a = ms(s.started_at);
    const b = Number.isFinite(ms(s.ended_at ?? null)) ? ms(s.ended_at ?? null) : a;
    let bar = '';
    if (Number.isFinite(a)) {
      const from = Math.round(((a - t0) / span) * BAR);
      const width = Math.max(1, Math.round(((b - a) / span) * BAR));
      bar = ' '.repeat(from) + '\u2588'.repeat(Math.min(width, BAR - from || 1));
    }
    return [s.stage, s.status, String(s.attempts ?? ''), Number.isFinite(a) ? `+${a - t0} ms` : '', s.duration_ms != null ? `${s.duration_ms} ms` : '', bar];
  });
  return table(['stage', 'status', 'attempts', 'start', 'duration', 'timeline'], rows);
}

export function jobCommand(): Command {
  const job = new Command('job').description("an image's pipeline run (PIR's import job)");
  job.addCommand(new Command('show')
    .description('the stage timeline of an image\'s pipeline run: status, attempts, start and duration of each stage, and the refusal reason')
    .argument('<id>', 'image id, or task id <image>.<run>')
    .action(async (id: string, _o, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      const m = /^(.+)\.(\d+)$/.exec(id);
      const image = await client.getImage(m ? m[1]! : id);
      const t = timelineOf(image);
      if (!t) throw new NotFoundError(404, 'no_pipeline_run', `Image ${image.id} (${image.status}) has no pipeline run yet: upload or import its data first.`, 'GET', `/v2/images/${image.id}`, null);
      if (m && Number(m[2]) !== t.run) throw new NotFoundError(404, 'run_not_kept', `Image ${image.id} is on run ${t.run}; PIR keeps the stage timings of the latest run only (pir job show ${image.id}).`, 'GET', `/v2/images/${image.id}`, null);
      if (format === 'json') return void process.stdout.write(JSON.stringify(t, null, 2) + '\n');
      if (format === 'yaml') return void process.stdout.write((await import('yaml')).stringify(t));
      process.stdout.write(`image ${t.image_id}  run ${t.run} (${t.method})  ${t.status}\n`);
      if (t.stages.length > 0) process.stdout.write(waterfall(t));
      if (t.failure) process.stdout.write(`refused at ${t.failure.stage}: ${t.failure.message} (${t.failure.code})\n`);
    }));
  return job;
}
