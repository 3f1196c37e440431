/** `pir gallery …`: a project's tree of galleries, and the galleries shared with it (README "Galleries"). */
import { Command } from 'commander';
import { AuthError, CatalogClient, GalleryReadOnly, type GalleryRecord } from '../client/index.js';
import { contextOf } from './context.js';
import { LIST_COLUMNS } from './image-commands.js';
import { printList, printRecord } from './output.js';

const COLUMNS = ['id', 'path', 'image_count', 'gallery_count'];

/** How a GALLERY argument is read (the same for --gallery and --parent). */
const GALLERY_HELP = `
GALLERY is a path of your project (linux/debian) or an id. A gallery shared with you
(pir gallery list --shared) is named by its id, and is read-only: rename, move and
delete answer exit 5. A UUID that is both a gallery's id and the path of one of
yours is refused (exit 2): write id:UUID for the id, /UUID for the path.`;
const READ_ARG = 'path (of your project) or id (also of a gallery shared with you)';
const WRITE_ARG = 'path or id (of your project)';

/**
 * Runs a change of a gallery; the API's 403 for a gallery shared with the caller's project
 * (read-only for it) becomes a message that says so (exit 5, as any refusal of authorization).
 */
async function changing<T>(catalog: CatalogClient, gallery: GalleryRecord, action: string, change: () => Promise<T>): Promise<T> {
  try {
    return await change();
  } catch (error) {
    if (error instanceof AuthError && error.status === 403 && !(await catalog.isMine(gallery.id))) {
      throw new GalleryReadOnly(gallery, `shared with yours read-only: only its own project can ${action} it (PIR answered ${error.status} ${error.errorCode}: ${error.message})`);
    }
    throw error;
  }
}

/** A subcommand whose --help says how GALLERY is read. */
const sub = (name: string) => new Command(name).addHelpText('after', GALLERY_HELP);

export function galleryCommand(): Command {
  const gallery = new Command('gallery').description("arrange your project's images in a tree of galleries (create, list, show, images, rename, move, delete), and see the galleries shared with it (list --shared, then show/images by id)")
    .addHelpText('after', GALLERY_HELP);
  gallery.addCommand(sub('create').description('create a gallery in your project')
    .argument('<name>', 'its name (no "/")')
    .option('--parent <gallery>', 'the gallery of your project to create it in (path or id); default: at the root')
    .action(async (name: string, o: { parent?: string }, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      const catalog = new CatalogClient(client);
      const parent = o.parent ? (await catalog.resolveGallery(o.parent, { own: true })).id : null;
      printRecord(await catalog.createGallery(name, parent) as unknown as Record<string, unknown>, format);
    }));
  gallery.addCommand(new Command('list').description("your project's galleries, by path; --shared: the galleries other projects shared with yours")
    .option('--shared', 'the galleries shared with your project (GET /v2/galleries?shared=true), with your member_status (pending, accepted, rejected); name one by its id')
    .action(async (o: { shared?: boolean }, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      const catalog = new CatalogClient(client);
      if (o.shared) printList(await catalog.sharedGalleries() as unknown as Record<string, unknown>[], ['id', 'path', 'owner', 'member_status'], format);
      else printList(await catalog.listGalleries() as unknown as Record<string, unknown>[], ['id', 'path', 'parent_id'], format);
    }));
  gallery.addCommand(sub('show').description('a gallery with its counts of images and galleries (yours, or one shared with you by id)')
    .argument('<gallery>', READ_ARG)
    .option('-r, --recursive', 'count everything below it too')
    .action(async (g: string, o: { recursive?: boolean }, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      const catalog = new CatalogClient(client);
      const found = await catalog.resolveGallery(g);
      printRecord(await catalog.getGallery(found.id, !!o.recursive) as unknown as Record<string, unknown>, format);
      const subs = await catalog.subGalleries(found.id, !!o.recursive);
      if (subs.length && format === 'table') {
        process.stdout.write('\n');
        printList(subs as unknown as Record<string, unknown>[], COLUMNS, format);
      }
    }));
  gallery.addCommand(sub('images').description("a gallery's images, yours or one shared with you by id (the same as pir image list --gallery)")
    .argument('<gallery>', READ_ARG)
    .option('-r, --recursive', 'and the images of the galleries below it')
    .option('-q, --query <words>', 'keyword search among them')
    .action(async (g: string, o: { recursive?: boolean; query?: string }, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      const found = await new CatalogClient(client).resolveGallery(g);
      const images = [];
      for await (const image of client.allImages({ gallery: found.id, recursive: o.recursive || undefined, q: o.query, limit: 1000 })) images.push(image);
      printList(images as unknown as Record<string, unknown>[], LIST_COLUMNS, format);
    }));
  gallery.addCommand(sub('rename').description('rename a gallery of your project')
    .argument('<gallery>', WRITE_ARG).argument('<name>', 'the new name')
    .action(async (g: string, name: string, _o, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      const catalog = new CatalogClient(client);
      const found = await catalog.resolveGallery(g);
      printRecord(await changing(catalog, found, 'rename', () => catalog.updateGallery(found.id, { name })) as unknown as Record<string, unknown>, format);
    }));
  gallery.addCommand(sub('move').description('move a gallery of your project (with everything in it) into another, or to the root')
    .argument('<gallery>', WRITE_ARG).argument('[parent]', 'path or id of the new parent (of your project); leave out for the root')
    .action(async (g: string, parent: string | undefined, _o, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      const catalog = new CatalogClient(client);
      const found = await catalog.resolveGallery(g);
      const parentId = parent ? (await catalog.resolveGallery(parent, { own: true })).id : null;
      printRecord(await changing(catalog, found, 'move', () => catalog.updateGallery(found.id, { parent_id: parentId })) as unknown as Record<string, unknown>, format);
    }));
  gallery.addCommand(sub('delete').description('delete an empty gallery of your project')
    .argument('<gallery>', WRITE_ARG)
    .action(async (g: string, _o, cmd: Command) => {
      const { client } = await contextOf(cmd);
      const catalog = new CatalogClient(client);
      const found = await catalog.resolveGallery(g);
      await changing(catalog, found, 'delete', () => catalog.deleteGallery(found.id));
      process.stderr.write(`deleted gallery ${found.path} (${found.id})\n`);
    }));
  return gallery;
}
