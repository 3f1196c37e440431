/**
 * `pir image batch DIR`: uploads every image of a directory, N at a time, with an overall
 * progress view and a closing summary table. Each file is hashed first; its sha512 is sent at
 * create (PIR verifies it) and kept in the property `source_sha512`, so a rerun skips the files
 * already active with the same bytes.
 */
import { Command } from 'commander';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import picomatch from 'picomatch';
import cliProgress from 'cli-progress';
import { ImageRefusedError, type Image, type PirClient } from '../client/index.js';
import { hashFile } from '../ingest/hashing/index.js';
import { VISIBILITIES } from '../schemas/image.js';
import { collect, keyValue, positiveInt } from './args.js';
import { contextOf } from './context.js';
import { describeError, EXIT, UsageError } from './exit-codes.js';
import { fileFormat } from './disk-format.js';
import { humanBytes, printList } from './output.js';
import { isTerminal, summary } from './progress.js';
import { signalled } from './interrupt.js';
import { discardUnfilled } from './leftover.js';
import { uploadAndSettle } from './upload-flow.js';
import { galleryIdOf, readMetafile } from './metafile.js';

/** The property that remembers which file an image came from. */
export const SOURCE_PROPERTY = 'source_sha512';

interface BatchOptions {
  pattern: string;
  parallel: number;
  property: string[];
  tag: string[];
  visibility?: string;
  import?: boolean;
  metafile?: string;
}

export interface BatchRow {
  file: string;
  status: 'active' | 'skipped' | 'refused' | 'failed';
  image: string;
  disk_format: string;
  size: number;
  seconds: number;
  note: string;
}

export function batchCommand(): Command {
  return new Command('batch')
    .description('upload every image in a directory; a rerun skips images already active with the same sha512')
    .argument('<dir>', 'directory of images (not recursive)')
    .option('--pattern <glob>', 'only files matching this glob, e.g. "*.qcow2"', '*')
    .option('--parallel <n>', 'uploads at a time', positiveInt, 2)
    .option('--property <key=value>', 'an extra property for every image (repeatable)', collect, [])
    .option('--tag <tag>', 'a tag for every image (repeatable)', collect, [])
    .option('--visibility <visibility>', `visibility of every image (${VISIBILITIES.join(', ')})`)
    .option('--import', 'use stage + glance-direct import instead of a direct upload')
    .option('--metafile <file>', "a metafile (pir image metafile ID > FILE) whose visibility, tags, properties and gallery every image gets; the command line's win")
    .addHelpText('after', `
Disk formats come from the extension (.qcow2 .raw .vmdk .vhd .vhdx .vdi .iso; .gz .xz .zst as
container "compressed"; .ova), otherwise from the file's magic bytes. The image name is the file name.
Exit code: 0 when every image is active or skipped, 3 when some were refused (and none failed otherwise), 1 otherwise.`)
    .action(async (dir: string, o: BatchOptions, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      const rows = await runBatch(client, dir, o);
      printList(rows as unknown as Record<string, unknown>[], ['file', 'status', 'image', 'disk_format', 'size', 'seconds', 'note'], format);
      const counts = (s: BatchRow['status']) => rows.filter((r) => r.status === s).length;
      process.stderr.write(`${rows.length} files: ${counts('active')} uploaded, ${counts('skipped')} skipped, ${counts('refused')} refused, ${counts('failed')} failed\n`);
      if (counts('failed')) process.exitCode = EXIT.failure;
      else if (counts('refused')) process.exitCode = EXIT.refused;
    });
}

async function listFiles(dir: string, pattern: string): Promise<{ path: string; name: string; size: number }[]> {
  const match = picomatch(pattern, { dot: false });
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (error) {
    throw new UsageError(`cannot read the directory ${dir}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  const files = [];
  for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (!e.isFile() || e.name.startsWith('.') || e.name.endsWith('.part') || !match(e.name)) continue;
    const path = join(dir, e.name);
    files.push({ path, name: e.name, size: (await stat(path)).size });
  }
  if (files.length === 0) throw new UsageError(`no files in ${dir} match '${pattern}'`);
  return files;
}

/** An image already active with these bytes, uploaded by an earlier batch. */
async function alreadyActive(client: PirClient, sha512: string): Promise<Image | null> {
  // Servers without property filters ignore the filter and list everything: check each one.
  for await (const image of client.allImages({ status: 'active', [SOURCE_PROPERTY]: sha512, limit: 1000 })) {
    if (image.status === 'active' && (image[SOURCE_PROPERTY] === sha512) && image.os_hash_value !== null) return image;
  }
  return null;
}

export async function runBatch(client: PirClient, dir: string, o: BatchOptions): Promise<BatchRow[]> {
  const files = await listFiles(dir, o.pattern);
  // The metafile's metadata first, the command line on top (names and formats come from each file).
  const meta = o.metafile ? await readMetafile(o.metafile) : {};
  const extra: Record<string, string> = {};
  for (const [k, v] of Object.entries(meta.properties ?? {})) if (!k.startsWith('pir_')) extra[k] = v;
  const tags = o.tag.length ? o.tag : (meta.tags ?? []);
  const visibility = o.visibility ?? meta.visibility ?? undefined;
  const galleryId = await galleryIdOf(client, meta.gallery ?? null);
  for (const p of o.property) {
    const [key, value] = keyValue(p, '--property');
    extra[key] = value;
  }
  const totalBytes = files.reduce((n, f) => n + f.size, 0);
  const view = overallView(files.length, totalBytes);
  const rows: BatchRow[] = new Array(files.length);
  let next = 0;
  let finished = 0;
  const worker = async () => {
    for (let i = next++; i < files.length; i = next++) {
      const file = files[i]!;
      const t0 = performance.now();
      const row: BatchRow = { file: file.name, status: 'failed', image: '', disk_format: '', size: file.size, seconds: 0, note: '' };
      let counted = 0;
      const count = (bytes: number) => { view.add(bytes - counted); counted = bytes; };
      try {
        const fmt = await fileFormat(file.path);
        row.disk_format = fmt.disk_format;
        const hashed = await hashFile(file.path);
        const existing = await alreadyActive(client, hashed.sha512);
        if (existing) {
          Object.assign(row, { status: 'skipped', image: existing.id, note: 'already active with the same sha512' });
        } else {
          const created = await client.createImage({
            name: file.name, disk_format: fmt.disk_format, container_format: fmt.container_format,
            os_hash_value: hashed.sha512, [SOURCE_PROPERTY]: hashed.sha512, ...extra,
            ...(tags.length ? { tags } : {}), ...(visibility ? { visibility } : {}),
          });
          row.image = created.id;
          if (galleryId) await client.updateImage(created.id, [{ op: 'add', path: '/pir_gallery_id', value: galleryId }]);
          const image = await uploadAndSettle(client, created.id, file.path, file.size, { md5: hashed.md5, import: o.import, wait: o.import, quiet: true, onProgress: count });
          row.status = image.status === 'active' ? 'active' : 'failed';
          row.note = image.status === 'active' ? `${fmt.disk_format} by ${fmt.by}` : `ended ${image.status}`;
        }
      } catch (error) {
        if (error instanceof ImageRefusedError) {
          row.status = 'refused';
          row.note = `${error.failure.stage}: ${error.failure.message}`;
        } else {
          row.note = describeError(error).message.split('\n')[0]!;
        }
        // An image this batch made that never got its data is not left behind unexplained.
        const left = row.image && !signalled() ? await discardUnfilled(client, row.image) : null;
        if (left) row.note += `; ${left}`;
      }
      count(file.size);
      row.seconds = Math.round((performance.now() - t0) / 100) / 10;
      rows[i] = row;
      view.done(++finished, row);
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.parallel, files.length) }, worker));
  view.stop();
  return rows;
}

/** The overall view: one bar (images and bytes) on a terminal, one line per finished image otherwise. */
function overallView(total: number, totalBytes: number) {
  const t0 = performance.now();
  let bytes = 0;
  if (isTerminal()) {
    const bar = new cliProgress.SingleBar({
      stream: process.stderr,
      format: 'batch {bar} {percentage}% | {images}/{total} images | {bytesH} of {totalH} | {rateH}',
      hideCursor: true,
      fps: 10,
    });
    const payload = (n: number) => ({ images: n, bytesH: humanBytes(bytes), totalH: humanBytes(totalBytes), rateH: `${humanBytes(bytes / Math.max((performance.now() - t0) / 1000, 1e-3))}/s` });
    let images = 0;
    bar.start(Math.max(totalBytes, 1), 0, payload(0));
    return {
      add(n: number) { bytes += n; bar.update(bytes, payload(images)); },
      done(n: number, row: BatchRow) {
        images = n;
        bar.update(bytes, payload(n));
        if (row.status === 'refused' || row.status === 'failed') process.stderr.write(`\r\x1b[2K${row.file}: ${row.status}: ${row.note}\n`);
      },
      stop() { bar.stop(); },
    };
  }
  return {
    add(n: number) { bytes += n; },
    done(n: number, row: BatchRow) {
      process.stderr.write(`[${n}/${total}] ${row.file}: ${row.status}${row.image ? ` ${row.image}` : ''}${row.note ? ` (${row.note})` : ''}; ${summary(bytes, (performance.now() - t0) / 1000)} so far\n`);
    },
    stop() {},
  };
}
