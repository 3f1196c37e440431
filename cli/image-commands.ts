/** `pir image …`: create, list, show, update, delete, download, wait (batch lives in batch.ts). */
import { Command, Option } from 'commander';
import { existsSync } from 'node:fs';
import { access, constants, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { CatalogClient, partPath, type Image, type JsonPatchOp } from '../client/index.js';
import { galleryIdOf, mergeRegistration, readMetafile, registrationPatch } from './metafile.js';
import { hashFile } from '../ingest/hashing/index.js';
import { CONTAINER_FORMATS, DISK_FORMATS, VISIBILITIES } from '../schemas/image.js';
import { collect, keyValue, md5Hex, positiveInt, seconds, sha512Hex } from './args.js';
import { batchCommand } from './batch.js';
import { contextOf } from './context.js';
import { UsageError, describeError } from './exit-codes.js';
import { followImage, stageLine } from './follow.js';
import { humanBytes, printList, printRecord, type Format } from './output.js';
import { noteOnInterrupt } from './interrupt.js';
import { filling } from './leftover.js';
import { createProgress, summary } from './progress.js';
import { uploadAndSettle } from './upload-flow.js';
import { shareCommand } from './share-commands.js';

/** An image for printing: in a table, the pipeline as its stage line rather than raw JSON. */
export function printImage(image: Image, format: Format): void {
  if (format !== 'table' || !image.pir_pipeline) return printRecord(image, format);
  const p = image.pir_pipeline;
  printRecord({ ...image, pir_pipeline: `run ${p.run} (${p.method}): ${stageLine(image, true) || 'not started'}` }, format);
}

export const LIST_COLUMNS = ['id', 'name', 'status', 'disk_format', 'size', 'visibility'];

export function imageCommand(): Command {
  const image = new Command('image').description('manage images: create (upload), list, show, update, delete, download, wait, batch, history, restore, metafile, register, share');
  image.addCommand(createCommand());
  image.addCommand(listCommand());
  image.addCommand(new Command('show').description('show one image, with its pipeline progress (pir_pipeline) and refusal reason (pir_failure)')
    .argument('<id>', 'image id')
    .action(async (id: string, _o, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      printImage(await client.getImage(id), format);
    }));
  image.addCommand(updateCommand());
  image.addCommand(new Command('delete').description('delete images (and their data)')
    .argument('<id...>', 'image ids')
    .action(async (ids: string[], _o, cmd: Command) => {
      const { client } = await contextOf(cmd);
      // Each id is tried: one that fails is reported, and the exit code is the last failure's.
      let failed: unknown = null;
      for (const id of ids) {
        try {
          await client.deleteImage(id);
          process.stderr.write(`deleted ${id}\n`);
        } catch (error) {
          if (ids.length === 1) throw error;
          failed = error;
          process.stderr.write(`pir: ${id}: ${describeError(error).message}\n`);
        }
      }
      if (failed) process.exitCode = describeError(failed).code;
    }));
  image.addCommand(downloadCommand());
  image.addCommand(new Command('wait').description('follow an image through the pipeline until it is active (exit 0) or killed (exit 3, with the reason)')
    .argument('<id>', 'image id')
    .option('--timeout <seconds>', 'give up after this long (exit 1)', seconds, 3600)
    .action(async (id: string, o: { timeout: number }, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      printImage(await followImage(client, id, { timeoutMs: o.timeout * 1000 }), format);
    }));
  image.addCommand(batchCommand());
  image.addCommand(shareCommand());
  image.addCommand(historyCommand());
  image.addCommand(new Command('restore').description("bring an image's metadata back to revision N (one new revision)")
    .argument('<id>', 'image id').argument('<n>', 'revision number', positiveInt)
    .action(async (id: string, n: number, _o, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      printImage(await new CatalogClient(client).restore(id, n) as unknown as Image, format);
    }));
  image.addCommand(new Command('metafile').description("print the image's metafile (JSON: name, formats, visibility, tags, properties, gallery): pir image metafile ID > FILE")
    .argument('<id>', 'image id')
    .action(async (id: string, _o, cmd: Command) => {
      const { client } = await contextOf(cmd);
      process.stdout.write(JSON.stringify(await new CatalogClient(client).metafile(id), null, 2) + '\n');
    }));
  image.addCommand(registerCommand());
  return image;
}

interface CreateOptions {
  name: string;
  diskFormat: string;
  containerFormat: string;
  file: string;
  property: string[];
  tag: string[];
  visibility?: string;
  wait?: boolean;
  import?: boolean;
  resumable?: boolean;
  sha512?: string;
  verifyFirst?: boolean;
  timeout: number;
  gallery?: string;
}

function createCommand(): Command {
  return new Command('create')
    .description('create an image and upload its file, hashing it (md5 + sha512) as it is sent')
    .requiredOption('--name <name>', 'image name')
    .addOption(new Option('--disk-format <format>', 'disk format').choices([...DISK_FORMATS]).makeOptionMandatory())
    .addOption(new Option('--container-format <format>', 'container format').choices([...CONTAINER_FORMATS]).default('bare'))
    .requiredOption('--file <path>', 'the image file to upload')
    .option('--property <key=value>', 'an extra property (repeatable)', collect, [])
    .option('--tag <tag>', 'a tag (repeatable)', collect, [])
    .addOption(new Option('--visibility <visibility>', 'who may see the image').choices([...VISIBILITIES]))
    .option('--wait', 'upload asynchronously, then follow the pipeline stage by stage until active or killed')
    .option('--import', "use the interoperable import: stage the bytes, then import with glance-direct")
    .option('--resumable', 'upload with tus (POST/PATCH …/uploads): a cut connection resumes from the bytes PIR already has')
    .option('--sha512 <hex>', 'the sha512 the file must have (e.g. from a SHA512SUMS file): sent at create so PIR refuses other bytes', sha512Hex)
    .option('--verify-first', 'hash the file before creating the image, so PIR verifies both md5 (Content-MD5) and sha512 (one more read of the file)')
    .option('--timeout <seconds>', 'with --wait: give up after this long', seconds, 3600)
    .option('--gallery <gallery>', 'put the image in this gallery of your project (path, e.g. linux/debian, or id)')
    .addHelpText('after', `
Without --sha512 or --verify-first, the hashes computed while sending are compared with the ones
PIR computed once the image is active (when it stored the bytes as sent); a difference deletes the
image and exits 1. Without --wait, the upload returns when the image is active (or refused: exit 3).`)
    .action(async (o: CreateOptions, cmd: Command) => {
      if (o.resumable && o.import) throw new UsageError('--resumable and --import are two different upload paths: choose one');
      const { client, format } = await contextOf(cmd);
      const size = await fileToUpload(o.file);
      const fields: Record<string, unknown> = { name: o.name, disk_format: o.diskFormat, container_format: o.containerFormat };
      for (const p of o.property) {
        const [key, value] = keyValue(p, '--property');
        fields[key] = value;
      }
      if (o.tag.length) fields.tags = o.tag;
      if (o.visibility) fields.visibility = o.visibility;
      let md5: string | undefined;
      let sha512 = o.sha512;
      if (o.verifyFirst) {
        const t0 = performance.now();
        const hashed = await hashFile(o.file);
        md5 = hashed.md5;
        if (sha512 && sha512 !== hashed.sha512) throw new UsageError(`${o.file} has sha512 ${hashed.sha512}, not the --sha512 given`);
        sha512 = hashed.sha512;
        process.stderr.write(`hashed ${o.file}: ${summary(size, (performance.now() - t0) / 1000)}\n`);
      }
      if (sha512) fields.os_hash_value = sha512;
      // The gallery is looked up before anything is created: a wrong one is a clean failure.
      const galleryId = await galleryIdOf(client, o.gallery ?? null);
      const created = await client.createImage(fields);
      process.stderr.write(`created image ${created.id} (${o.name})\n`);
      const image = await filling(client, created.id, async () => {
        if (galleryId) await client.updateImage(created.id, [{ op: 'add', path: '/pir_gallery_id', value: galleryId }]);
        return uploadAndSettle(client, created.id, o.file, size, { md5, wait: o.wait, import: o.import, resumable: o.resumable, timeoutMs: o.timeout * 1000 });
      });
      printImage(image, format);
    });
}

function listCommand(): Command {
  return new Command('list')
    .description("list images, with the server's filters")
    .option('--filter <key=value>', 'any filter the server takes, e.g. name=debian, disk_format=qcow2, id=in:a,b, size_min=1 (repeatable)', collect, [])
    .option('--tag <tag>', 'only images with this tag (repeatable)', collect, [])
    .option('--status <status>', 'only images with this status')
    .option('--visibility <visibility>', 'only images with this visibility')
    .option('--sort <key:dir>', 'sort, e.g. name:asc or created_at:desc')
    .option('--limit <n>', 'images per page (the server caps it at 1000)', positiveInt)
    .option('--marker <id>', 'start after this image')
    .option('--all', 'follow the next links through every page')
    .option('-q, --query <words>', 'keyword search over name, tags and property values (last word: a prefix); --sort relevance ranks the matches')
    .option('--gallery <gallery>', "only images of this gallery: a path of your project (linux/debian) or an id, also of a gallery shared with you (pir gallery list --shared); id:UUID or /PATH when a UUID is both")
    .option('-r, --recursive', 'with --gallery: and of the galleries below it')
    .action(async (o: { filter: string[]; tag: string[]; status?: string; visibility?: string; sort?: string; limit?: number; marker?: string; all?: boolean; query?: string; gallery?: string; recursive?: boolean }, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      if (o.recursive && !o.gallery) throw new UsageError('--recursive goes with --gallery');
      const gallery = o.gallery ? (await new CatalogClient(client).resolveGallery(o.gallery)).id : undefined;
      const query: Record<string, string | string[] | number | undefined> = {
        status: o.status, visibility: o.visibility, sort: o.sort, limit: o.limit, marker: o.marker, q: o.query, gallery, recursive: o.recursive ? 'true' : undefined,
      };
      for (const f of o.filter) {
        const [key, value] = keyValue(f, '--filter');
        query[key] = value;
      }
      if (o.tag.length) query.tag = o.tag;
      const images: Image[] = [];
      if (o.all) {
        for await (const image of client.allImages(query)) images.push(image);
      } else {
        const page = await client.listImages(query);
        images.push(...page.images);
        // On stderr whatever the format: a script reading json or yaml must learn the list is not whole.
        if (page.next) process.stderr.write(`(more images: add --all, or --marker ${images[images.length - 1]!.id})\n`);
      }
      printList(images, LIST_COLUMNS, format);
    });
}

function updateCommand(): Command {
  return new Command('update')
    .description('change an image (JSON patch): name, properties, visibility, protection')
    .argument('<id>', 'image id')
    .option('--name <name>', 'new name')
    .option('--property <key=value>', 'set a property (repeatable)', collect, [])
    .option('--remove-property <key>', 'remove a property (repeatable); one the image lacks is skipped, as by glance image-update', collect, [])
    .addOption(new Option('--visibility <visibility>', 'who may see the image').choices([...VISIBILITIES]))
    .addOption(new Option('--protected', 'protect the image from deletion').conflicts('unprotected'))
    .option('--unprotected', 'allow deleting the image again')
    .action(async (id: string, o: UpdateOptions, cmd: Command) => {
      if (buildPatch({}, { ...o, removeProperty: [] }).length + o.removeProperty.length === 0) throw new UsageError('nothing to change: give --name, --property, --remove-property, --visibility, --protected or --unprotected');
      const { client, format } = await contextOf(cmd);
      const image = await client.getImage(id);
      const patch = buildPatch(image, o);
      for (const key of absentRemovals(image, o)) process.stderr.write(`(image ${id} has no property '${key}': nothing to remove)\n`);
      printImage(patch.length ? await client.updateImage(id, patch) : image, format);
    });
}

export interface UpdateOptions {
  name?: string;
  property: string[];
  removeProperty: string[];
  visibility?: string;
  protected?: boolean;
  unprotected?: boolean;
}

/**
 * The JSON patch for `pir image update`: `replace` for what the image has, `add` for what it lacks.
 * As glanceclient's image-update, --remove-property removes only what the image has and is not
 * set by --property: PIR refuses a patch removing an absent key (409), and nothing would apply.
 */
export function buildPatch(current: Record<string, unknown>, o: UpdateOptions): JsonPatchOp[] {
  const set = (key: string, value: unknown): JsonPatchOp => ({ op: key in current && current[key] !== null ? 'replace' : 'add', path: `/${pointer(key)}`, value });
  const patch: JsonPatchOp[] = [];
  if (o.name !== undefined) patch.push(set('name', o.name));
  for (const p of o.property) {
    const [key, value] = keyValue(p, '--property');
    patch.push(set(key, value));
  }
  for (const key of removals(current, o)) patch.push({ op: 'remove', path: `/${pointer(key)}` });
  if (o.visibility) patch.push(set('visibility', o.visibility));
  if (o.protected) patch.push(set('protected', true));
  if (o.unprotected) patch.push(set('protected', false));
  return patch;
}

/** The --remove-property keys not set by --property (once each), that the image has or not. */
function removals(current: Record<string, unknown>, o: UpdateOptions, has = true): string[] {
  const set = new Set(o.property.map((p) => keyValue(p, '--property')[0]));
  return [...new Set(o.removeProperty)].filter((key) => !set.has(key) && (key in current) === has);
}

/** The --remove-property keys the image does not have (skipped, as glanceclient does). */
export function absentRemovals(current: Record<string, unknown>, o: UpdateOptions): string[] {
  return removals(current, o, false);
}

/** JSON pointer escaping of one key. */
function pointer(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

function downloadCommand(): Command {
  return new Command('download')
    .description("download an image's data, verifying its sha512 (os_hash_value) and md5 (checksum); resumes an interrupted download (FILE.part)")
    .argument('<id>', 'image id')
    .requiredOption('--file <path>', "where to write the image (required); '-' writes it to standard output, a device or pipe is written as it is (neither resumes)")
    .option('--no-resume', 'start over even when FILE.part exists')
    .action(async (id: string, o: { file: string; resume: boolean }, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      const toStdout = o.file === '-';
      if (toStdout && process.stdout.isTTY) throw new UsageError('--file - writes the image to standard output, which is a terminal here; redirect it (> image.img) or pipe it.');
      let progress: ReturnType<typeof createProgress> | null = null;
      let total: number | null = null;
      const t0 = performance.now();
      // A download cut by a signal keeps its .part, as one cut by the network: say that a rerun resumes.
      const part = partPath(o.file);
      const forgetNote = noteOnInterrupt(() => !toStdout && existsSync(part) ? `${part} keeps the bytes so far: run the same command again to resume` : null);
      const result = await client.download(id, toStdout ? process.stdout : o.file, {
        resume: o.resume,
        onResume: (bytes) => process.stderr.write(`resuming: re-hashing the ${humanBytes(bytes)} already in ${o.file}.part\n`),
        onProgress: (done, size) => {
          total = size;
          progress ??= createProgress({ label: `downloading ${basename(o.file)}`, total: size });
          progress.update(done);
        },
      }).catch((error: unknown) => {
        (progress as ReturnType<typeof createProgress> | null)?.stop();
        throw error;
      }).finally(forgetNote);
      const fetched = result.size - result.resumedFrom;
      (progress as ReturnType<typeof createProgress> | null)?.finish();
      process.stderr.write(`downloaded ${id} to ${toStdout ? 'standard output' : o.file}: ${summary(fetched, (performance.now() - t0) / 1000)}${result.resumedFrom ? `, resumed at byte ${result.resumedFrom}` : ''}; sha512 ${result.verified.sha512 ? 'verified' : 'not published by the server'}, md5 ${result.verified.md5 ? 'verified' : 'not published by the server'}\n`);
      void total;
      // Standard output carries the image: the record would corrupt it.
      if (!toStdout) printRecord({ id, file: o.file, size: result.size, md5: result.md5, sha512: result.sha512, resumed_from: result.resumedFrom, verified: result.verified }, format);
    });
}

function historyCommand(): Command {
  return new Command('history')
    .description("an image's metadata revisions: who changed what, when (the JSON Patch of each); --show N prints the whole metadata of one")
    .argument('<id>', 'image id')
    .option('--show <n>', 'print revision N with the whole metadata as it was then', positiveInt)
    .action(async (id: string, o: { show?: number }, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      const catalog = new CatalogClient(client);
      if (o.show !== undefined) return printRecord(await catalog.revision(id, o.show) as unknown as Record<string, unknown>, format);
      const rows: Record<string, unknown>[] = [];
      for await (const r of catalog.revisions(id)) {
        rows.push(format === 'table'
          ? { n: r.n, at: r.at, who: `${r.user_id}@${r.project_id}`, action: r.action, changes: r.patch.map((p) => `${p.op} ${p.path || '/'}`).join(', ') }
          : (r as unknown as Record<string, unknown>));
      }
      printList(rows, ['n', 'at', 'who', 'action', 'changes'], format);
    });
}

interface RegisterOptions {
  metafile?: string;
  property: string[];
  tag: string[];
  diskFormat?: string;
  containerFormat?: string;
  visibility?: string;
  gallery?: string;
  image?: string;
  file?: string;
  location?: string;
  sha512?: string;
  md5?: string;
  wait?: boolean;
  timeout: number;
}

function registerCommand(): Command {
  return new Command('register')
    .description('register an image from a metafile (kamaki style): the command line wins over the metafile; registering again replaces the metadata')
    .argument('[name]', 'the image name (default: the metafile\'s)')
    .option('--metafile <file>', 'a metafile, as pir image metafile ID writes it')
    .option('--property <key=value>', 'a property (repeatable; wins over the metafile\'s)', collect, [])
    .option('--tag <tag>', 'the tags (repeatable; replaces the metafile\'s)', collect, [])
    .addOption(new Option('--disk-format <format>', 'disk format').choices([...DISK_FORMATS]))
    .addOption(new Option('--container-format <format>', 'container format').choices([...CONTAINER_FORMATS]))
    .addOption(new Option('--visibility <visibility>', 'who may see the image').choices([...VISIBILITIES]))
    .option('--gallery <gallery>', 'the gallery of your project (path or id; wins over the metafile\'s)')
    .option('--image <id>', 'the image to register again (default: the one image of that name your project owns, if any)')
    .option('--file <path>', 'upload this file to a newly registered image')
    .option('--location <url>', 'register bytes that already exist (s3://bucket/key or an http(s) URL) as a new image, without uploading them')
    .option('--sha512 <hex>', 'with --location: the sha512 the bytes must have (validation_data)', sha512Hex)
    .option('--md5 <hex>', 'with --location: the md5 the bytes must have (validation_data)', md5Hex)
    .option('--wait', 'with --file or --location: follow the pipeline until active or killed')
    .option('--timeout <seconds>', 'with --wait: give up after this long', seconds, 3600)
    .addHelpText('after', `
Registering a name that exists again (or --image ID) replaces that image's metadata with the
metafile plus the command line: properties and tags it does not name are removed, in one PATCH,
which is one new revision (pir image history ID). Otherwise a new image is created.`)
    .action(async (name: string | undefined, o: RegisterOptions, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      if (o.location && o.file) throw new UsageError('--location and --file both give the image\'s bytes: choose one');
      if ((o.sha512 || o.md5) && !o.location) throw new UsageError('--sha512 and --md5 check the bytes of a --location');
      // Checked before the image is made: a refused location would leave it behind.
      if (o.location && !/^(s3|https?):\/\//i.test(o.location)) throw new UsageError(`--location takes s3://bucket/key or an http(s) URL (got '${o.location.slice(0, 64)}')`);
      if (o.file) await fileToUpload(o.file);
      const meta = o.metafile ? await readMetafile(o.metafile) : {};
      const properties: Record<string, string> = {};
      for (const p of o.property) {
        const [key, value] = keyValue(p, '--property');
        properties[key] = value;
      }
      const reg = mergeRegistration(meta, { name, diskFormat: o.diskFormat, containerFormat: o.containerFormat, visibility: o.visibility, tag: o.tag, properties, gallery: o.gallery });
      const galleryId = await galleryIdOf(client, reg.gallery);
      let target: Image | null = o.image ? await client.getImage(o.image) : null;
      if (!target) {
        // Only an image of the caller's own project is registered again: never another project's public or shared one.
        const owner = (await client.request<{ project_id: string }>('GET', '/v2/info/caller')).project_id;
        const same = (await client.listImages({ name: `eq:${reg.name}`, owner, visibility: 'all', limit: 2 })).images;
        if (same.length > 1) throw new UsageError(`several images are named '${reg.name}': say which to register again with --image ID`);
        target = same[0] ?? null;
      }
      if (target && o.location) throw new UsageError(`an image named '${reg.name}' exists (${target.id}); --location registers bytes to a new image: choose another name`);
      if (target) {
        const patch = registrationPatch(target, reg, galleryId);
        const updated = patch.length ? await client.updateImage(target.id, patch) : target;
        process.stderr.write(`registered again: image ${target.id} (${patch.length} change${patch.length === 1 ? '' : 's'})\n`);
        return printImage(updated, format);
      }
      const fields: Record<string, unknown> = { name: reg.name, tags: reg.tags, ...reg.properties };
      for (const k of ['disk_format', 'container_format', 'visibility', 'protected', 'min_disk', 'min_ram'] as const) if (reg[k] !== undefined) fields[k] = reg[k];
      const created = await client.createImage(fields);
      process.stderr.write(`registered image ${created.id} (${reg.name})\n`);
      const image = await filling(client, created.id, async () => {
        let image = galleryId ? await client.updateImage(created.id, [{ op: 'add', path: '/pir_gallery_id', value: galleryId }]) : created;
        if (o.file) {
          const size = await fileToUpload(o.file);
          image = await uploadAndSettle(client, created.id, o.file, size, { wait: o.wait, timeoutMs: o.timeout * 1000 });
        }
        if (o.location) {
          await client.addLocation(created.id, o.location, { ...(o.md5 ? { checksum: o.md5 } : {}), ...(o.sha512 ? { os_hash_algo: 'sha512' as const, os_hash_value: o.sha512 } : {}) });
          process.stderr.write(`location added: PIR reads the bytes once for their digests, then inspects them where they are\n`);
          image = o.wait ? await followImage(client, created.id, { timeoutMs: o.timeout * 1000 }) : await client.getImage(created.id);
        }
        return image;
      });
      printImage(image, format);
    });
}

/** The size of a file to upload, checked before any image is created: it exists, is a file, and can be read. */
async function fileToUpload(file: string): Promise<number> {
  if (file === '-') throw new UsageError('--file - (standard input) is not taken: an upload needs a file it can size and read again; save the data to a file first.');
  const info = await stat(file).catch(() => { throw new UsageError(`--file ${file}: no such file`); });
  if (info.isDirectory()) throw new UsageError(`--file ${file} is a directory; give the image file (or upload a directory's images with pir image batch)`);
  if (!info.isFile()) throw new UsageError(`--file ${file} is not a regular file; an upload needs a file it can size and read again`);
  await access(file, constants.R_OK).catch(() => { throw new UsageError(`--file ${file}: permission denied`); });
  return info.size;
}
