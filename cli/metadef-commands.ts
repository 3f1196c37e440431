/**
 * `pir metadef …`: Glance's metadata definitions catalog (/v2/metadefs) for operators: list,
 * show, import files in Glance's format (one namespace per JSON file, as Glance ships in
 * etc/metadefs and `glance-manage db_load_metadefs` loads), export, delete. Changing the catalog
 * needs an administrator's token; `glance md-*` covers the finer calls (properties, objects, tags).
 */
import { readFile, stat, writeFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { ConflictError, exportable, MetadefsApi, type MetadefNamespace } from '../client/index.js';
import { collect } from './args.js';
import { contextOf } from './context.js';
import { EXIT, UsageError } from './exit-codes.js';
import { printList, printRecord } from './output.js';

/** A namespace file larger than this is refused before it is read (the server takes at most 1 MiB of JSON). */
const MAX_FILE_BYTES = 4 * 1024 * 1024;

const names = (items: { name?: unknown }[] | undefined) => (items ?? []).map((i) => String(i.name)).join(', ');

/** A namespace for people: what it applies to and what it holds, by name. */
function summary(ns: MetadefNamespace): Record<string, unknown> {
  return {
    namespace: ns.namespace,
    display_name: ns.display_name ?? '',
    description: ns.description ?? '',
    visibility: ns.visibility,
    protected: ns.protected,
    owner: ns.owner,
    resource_types: (ns.resource_type_associations ?? []).map((a) => (a.prefix ? `${a.name} (${a.prefix})` : a.name)).join(', '),
    properties: Object.keys(ns.properties ?? {}).join(', '),
    objects: names(ns.objects as { name?: unknown }[] | undefined),
    tags: names(ns.tags),
    created_at: ns.created_at,
    updated_at: ns.updated_at,
  };
}

/** Reads one namespace file: a JSON object with a `namespace`. */
async function readNamespaceFile(file: string): Promise<Record<string, unknown> & { namespace: string }> {
  const size = (await stat(file)).size;
  if (size > MAX_FILE_BYTES) throw new UsageError(`${file}: ${size} bytes; a namespace file is at most ${MAX_FILE_BYTES} bytes`);
  let body: unknown;
  try {
    body = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new UsageError(`${file} is not JSON (${(error as Error).message})`);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body) || typeof (body as { namespace?: unknown }).namespace !== 'string') {
    throw new UsageError(`${file}: a namespace file is one JSON object with a "namespace" (Glance's metadefs format)`);
  }
  return body as Record<string, unknown> & { namespace: string };
}

/** Deletes a namespace, unprotecting it first (a protected namespace cannot be deleted). */
async function forceRemove(api: MetadefsApi, name: string): Promise<void> {
  const ns = await api.get(name);
  if (ns.protected) {
    const { namespace, display_name, description, visibility, owner } = ns;
    await api.update(name, { namespace, display_name, description, visibility, owner, protected: false });
  }
  await api.remove(name);
}

export function metadefCommand(): Command {
  const metadef = new Command('metadef').description("Glance's metadata definitions catalog: list, show, import (Glance's JSON files), export, delete");

  metadef.addCommand(new Command('list')
    .description('list the namespaces you may see')
    .option('--resource-type <type>', 'only those associated with this resource type, e.g. OS::Glance::Image (repeatable: any of)', collect, [])
    .addOption(new Option('--visibility <v>', 'only public or only private ones').choices(['public', 'private']))
    .action(async (o: { resourceType: string[]; visibility?: string }, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      const list = await new MetadefsApi(client).list({
        ...(o.resourceType.length ? { resource_types: o.resourceType.join(',') } : {}),
        ...(o.visibility ? { visibility: o.visibility } : {}),
      });
      if (format !== 'table') return printList(list, [], format);
      printList(list.map(summary), ['namespace', 'display_name', 'visibility', 'protected', 'resource_types'], format);
    }));

  metadef.addCommand(new Command('show')
    .description('show one namespace and what it holds')
    .argument('<namespace>', 'the namespace, e.g. OS::Compute::Libvirt')
    .option('--resource-type <type>', "show property names with that resource type's prefix")
    .action(async (name: string, o: { resourceType?: string }, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      const ns = await new MetadefsApi(client).get(name, o.resourceType);
      printRecord(format === 'table' ? summary(ns) : ns, format);
    }));

  metadef.addCommand(new Command('import')
    .description('create namespaces from JSON files in Glance\'s format (administrators); one already there is skipped unless --replace; exit code 1 if a file failed')
    .argument('<file...>', 'namespace files (e.g. /etc/glance/metadefs/*.json)')
    .option('--replace', 'delete a namespace of the same name first (even a protected one), then create it from the file')
    .action(async (files: string[], o: { replace?: boolean }, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      const api = new MetadefsApi(client);
      const results: Record<string, unknown>[] = [];
      let failed = 0;
      for (const file of files) {
        let namespace = '';
        try {
          const body = await readNamespaceFile(file);
          namespace = body.namespace;
          try {
            await api.create(body);
            results.push({ file, namespace, result: 'created' });
          } catch (error) {
            if (!(error instanceof ConflictError)) throw error;
            if (!o.replace) {
              results.push({ file, namespace, result: 'exists (skipped; --replace to overwrite)' });
              continue;
            }
            await forceRemove(api, namespace);
            await api.create(body);
            results.push({ file, namespace, result: 'replaced' });
          }
        } catch (error) {
          failed++;
          results.push({ file, namespace, result: `failed: ${(error as Error).message}` });
        }
      }
      printList(results, ['file', 'namespace', 'result'], format);
      if (failed) {
        process.stderr.write(`${failed} of ${files.length} file(s) could not be imported (see above)\n`);
        process.exitCode = EXIT.failure;
      }
    }));

  metadef.addCommand(new Command('export')
    .description("write a namespace as a JSON file in Glance's format (what import and glance md-namespace-import take)")
    .argument('<namespace>', 'the namespace')
    .option('--file <path>', 'write it here instead of to standard output')
    .action(async (name: string, o: { file?: string }, cmd: Command) => {
      const { client } = await contextOf(cmd);
      const text = `${JSON.stringify(exportable(await new MetadefsApi(client).get(name)), null, 2)}\n`;
      if (o.file) await writeFile(o.file, text);
      else process.stdout.write(text);
    }));

  metadef.addCommand(new Command('delete').alias('remove')
    .description('delete namespaces with everything in them (administrators)')
    .argument('<namespace...>', 'the namespaces')
    .option('--force', 'unprotect a protected namespace first')
    .action(async (list: string[], o: { force?: boolean }, cmd: Command) => {
      const { client } = await contextOf(cmd);
      const api = new MetadefsApi(client);
      for (const name of list) {
        if (o.force) await forceRemove(api, name);
        else await api.remove(name);
        process.stderr.write(`deleted namespace ${name}\n`);
      }
    }));

  return metadef;
}
