/** `pir gallery …`: a project's tree of galleries (README "Galleries"). */
import { Command } from 'commander';
import { CatalogClient } from '../client/index.js';
import { contextOf } from './context.js';
import { LIST_COLUMNS } from './image-commands.js';
import { printList, printRecord } from './output.js';

const COLUMNS = ['id', 'path', 'image_count', 'gallery_count'];

export function galleryCommand(): Command {
  const gallery = new Command('gallery').description("arrange your project's images in a tree of galleries: create, list, show, images, rename, move, delete");
  gallery.addCommand(new Command('create').description('create a gallery (GALLERY: by id or path, e.g. linux/debian)')
    .argument('<name>', 'its name (no "/")')
    .option('--parent <gallery>', 'the gallery to create it in (id or path); default: at the root')
    .action(async (name: string, o: { parent?: string }, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      const catalog = new CatalogClient(client);
      const parent = o.parent ? (await catalog.resolveGallery(o.parent)).id : null;
      printRecord(await catalog.createGallery(name, parent) as unknown as Record<string, unknown>, format);
    }));
  gallery.addCommand(new Command('list').description("your project's galleries, by path")
    .action(async (_o, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      printList(await new CatalogClient(client).listGalleries() as unknown as Record<string, unknown>[], ['id', 'path', 'parent_id'], format);
    }));
  gallery.addCommand(new Command('show').description('a gallery with its counts of images and galleries')
    .argument('<gallery>', 'id or path')
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
  gallery.addCommand(new Command('images').description("a gallery's images (the same as pir image list --gallery)")
    .argument('<gallery>', 'id or path')
    .option('-r, --recursive', 'and the images of the galleries below it')
    .option('-q, --query <words>', 'keyword search among them')
    .action(async (g: string, o: { recursive?: boolean; query?: string }, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      const found = await new CatalogClient(client).resolveGallery(g);
      const images = [];
      for await (const image of client.allImages({ gallery: found.id, recursive: o.recursive || undefined, q: o.query, limit: 1000 })) images.push(image);
      printList(images as unknown as Record<string, unknown>[], LIST_COLUMNS, format);
    }));
  gallery.addCommand(new Command('rename').description('rename a gallery')
    .argument('<gallery>', 'id or path').argument('<name>', 'the new name')
    .action(async (g: string, name: string, _o, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      const catalog = new CatalogClient(client);
      printRecord(await catalog.updateGallery((await catalog.resolveGallery(g)).id, { name }) as unknown as Record<string, unknown>, format);
    }));
  gallery.addCommand(new Command('move').description('move a gallery (with everything in it) into another, or to the root')
    .argument('<gallery>', 'id or path').argument('[parent]', 'id or path of the new parent; leave out for the root')
    .action(async (g: string, parent: string | undefined, _o, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      const catalog = new CatalogClient(client);
      const id = (await catalog.resolveGallery(g)).id;
      const parentId = parent ? (await catalog.resolveGallery(parent)).id : null;
      printRecord(await catalog.updateGallery(id, { parent_id: parentId }) as unknown as Record<string, unknown>, format);
    }));
  gallery.addCommand(new Command('delete').description('delete an empty gallery')
    .argument('<gallery>', 'id or path')
    .action(async (g: string, _o, cmd: Command) => {
      const { client } = await contextOf(cmd);
      const catalog = new CatalogClient(client);
      const found = await catalog.resolveGallery(g);
      await catalog.deleteGallery(found.id);
      process.stderr.write(`deleted gallery ${found.path} (${found.id})\n`);
    }));
  return gallery;
}
