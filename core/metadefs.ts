/**
 * Glance's metadata definitions catalog (/v2/metadefs): namespaces of property definitions,
 * objects and tags that UIs offer when users set image, volume or flavor metadata. Every rule
 * is Glance's default (glance/policies/metadef.py, glance/domain, the metadef DB API):
 * - reading takes the reader role: a public namespace is read by every project's readers, a
 *   private one by its owner project's readers, and admins read all; anything else answers
 *   404, never 403, so names do not leak;
 * - writing (namespaces and everything in them): admins only;
 * - a protected namespace, and every object, property, tag and association in it, cannot be
 *   deleted (403) until `protected` is set to false.
 * Bodies arrive validated against the published schemas (api/metadef-schema.ts); this module
 * checks what a schema cannot say (names unique, prefixes, sizes) and keeps each namespace a
 * single compare-and-set document (core/metadef-ports.ts).
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Caller } from './caller.js';
import { fail } from './error-catalog.js';
import {
  MetadefNameTakenError, type MetadefNamespace, type MetadefObject, type MetadefPropertyDef, type MetadefStore,
  type MetadefTag, type ResourceType, type ResourceTypeAssociation,
} from './metadef-ports.js';
import { hasRole, isAdminCaller } from './policy.js';

/** Glance's limit_param_default and api_limit_max. */
export const METADEF_DEFAULT_LIMIT = 25;
export const METADEF_MAX_LIMIT = 1000;
/** Entries of one kind (properties, objects, tags, associations) in one namespace. */
const METADEF_MAX_ENTRIES = 1000;
/** Serialized size of one namespace document. */
const METADEF_MAX_BYTES = 2 * 1024 * 1024;
/** Compare-and-set attempts of one change before answering 503, with a growing random pause between them (writers racing on one namespace take turns). */
const WRITE_ATTEMPTS = 32;
const RETRY_PAUSE_MS = 4;

/** The resource types Glance's catalog ships with (seeded system types). */
const SEEDED_RESOURCE_TYPES = ['OS::Glance::Image', 'OS::Cinder::Volume', 'OS::Nova::Flavor', 'OS::Nova::Aggregate', 'OS::Nova::Server'];

/** The keys of a property definition Glance keeps (its PropertyType model); others are dropped, as there. */
const PROPERTY_KEYS = new Set(['title', 'description', 'operators', 'type', 'required', 'minimum', 'maximum', 'maxLength', 'minLength', 'pattern', 'enum', 'readonly', 'default', 'items', 'maxItems', 'minItems', 'uniqueItems', 'additionalItems', 'confidential']);
/** Read-only attributes a request body may not carry: Glance answers 403, before it validates the body (the routes check them first). */
export const METADEF_READ_ONLY = { namespace: ['self', 'schema', 'created_at', 'updated_at'], entry: ['created_at', 'updated_at'] };
const NAMESPACE_SORT_KEYS = new Set(['namespace', 'display_name', 'visibility', 'protected', 'owner', 'created_at', 'updated_at']);
const ENTRY_SORT_KEYS = new Set(['name', 'created_at', 'updated_at']);

export interface NamespaceInput {
  namespace: string;
  display_name?: string;
  description?: string;
  visibility?: 'public' | 'private';
  protected?: boolean;
  owner?: string;
  resource_type_associations?: { name: string; prefix?: string; properties_target?: string }[];
  properties?: Record<string, Record<string, unknown>>;
  objects?: ObjectInput[];
  tags?: { name: string }[];
}

export interface ObjectInput {
  name: string;
  description?: string;
  required?: string[];
  properties?: Record<string, Record<string, unknown>>;
}

/** The kinds of a namespace's entries kept as named lists, and what one is called in messages. */
type NamedKind = 'objects' | 'tags';
const NAMED: Record<NamedKind, string> = { objects: 'Object', tags: 'Tag' };

export interface ListQuery {
  limit: number;
  marker?: string;
  sort_key: string;
  sort_dir: 'asc' | 'desc';
}

export interface NamespaceListQuery extends ListQuery {
  visibility?: 'public' | 'private';
  resource_types?: string[];
}

const notFound = (what: string) => fail('metadef_not_found', `${what} was not found (or is not visible to your project).`);
const nsNotFound = (name: string) => notFound(`Metadata definition namespace ${name}`);

/** Who may see the namespace (Glance's ADMIN_OR_PROJECT_READER_GET_NAMESPACE): admins; readers, of a public one or their project's. */
export function canSeeNamespace(caller: Caller, ns: Pick<MetadefNamespace, 'visibility' | 'owner'>): boolean {
  return isAdminCaller(caller) || (hasRole(caller, 'reader') && (ns.visibility === 'public' || ns.owner === caller.project_id));
}

function requireAdmin(caller: Caller, action: string): void {
  if (!isAdminCaller(caller)) throw fail('policy_denied', `Policy does not allow ${action}: metadata definitions are changed by administrators only (Glance's metadef_admin).`);
}

export function refuseReadOnly(body: object, keys: string[]): void {
  for (const key of keys) {
    if (Object.hasOwn(body, key)) throw fail('read_only_property', `Attribute '${key}' is read-only.`);
  }
}

function requireProtectedOff(ns: MetadefNamespace, what: string): void {
  if (ns.protected) throw fail('metadef_protected', `Metadata definition namespace ${ns.namespace} is protected: ${what} cannot be deleted. Set protected to false first (PUT the namespace).`);
}

/** A property definition as Glance keeps it: known keys only, and a `pattern` that compiles. */
function propertyDef(name: string, raw: Record<string, unknown>): MetadefPropertyDef {
  const def: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) if (PROPERTY_KEYS.has(key)) def[key] = value;
  if (typeof def.pattern === 'string') {
    try {
      new RegExp(def.pattern, 'u');
    } catch {
      throw fail('bad_metadef', `Property ${name}: pattern is not a valid regular expression.`);
    }
  }
  return def as MetadefPropertyDef;
}

function propertyDefs(raw: Record<string, Record<string, unknown>> | undefined, where: string): Record<string, MetadefPropertyDef> {
  const defs: Record<string, MetadefPropertyDef> = {};
  for (const [name, value] of Object.entries(raw ?? {})) {
    checkName(name, `${where} property name`);
    defs[name] = propertyDef(name, value);
  }
  return defs;
}

/** Names travel in URL paths: no slash, no control character, no surrounding blanks. */
function checkName(name: string, what: string): void {
  // eslint-disable-next-line no-control-regex
  if (name.length === 0 || name.length > 80 || /[/\u0000-\u001f\u007f]/.test(name) || name.trim() !== name) {
    throw fail('bad_metadef', `The ${what} must have 1 to 80 characters, without '/', control characters or surrounding spaces.`);
  }
}

function unique<T>(items: T[], nameOf: (item: T) => string, what: string): void {
  const seen = new Set<string>();
  for (const item of items) {
    const name = nameOf(item);
    if (seen.has(name)) throw fail('metadef_conflict', `The ${what} ${name} appears twice.`);
    seen.add(name);
  }
}

function capEntries(ns: MetadefNamespace): void {
  const counts = { properties: Object.keys(ns.properties).length, objects: ns.objects.length, tags: ns.tags.length, resource_type_associations: ns.resource_type_associations.length };
  for (const [kind, n] of Object.entries(counts)) {
    if (n > METADEF_MAX_ENTRIES) throw fail('metadef_limit', `A namespace holds at most ${METADEF_MAX_ENTRIES} ${kind}; this change would make ${n}.`);
  }
  if (Buffer.byteLength(JSON.stringify(ns)) > METADEF_MAX_BYTES) throw fail('metadef_limit', `A namespace's definitions may take at most ${METADEF_MAX_BYTES / 1024 / 1024} MiB.`);
}

function compareBy<T>(key: string, dir: 'asc' | 'desc', tie: (x: T) => string): (a: T, b: T) => number {
  const sign = dir === 'asc' ? 1 : -1;
  return (a, b) => {
    const x = String((a as Record<string, unknown>)[key] ?? '');
    const y = String((b as Record<string, unknown>)[key] ?? '');
    if (x !== y) return x < y ? -sign : sign;
    const tx = tie(a), ty = tie(b);
    return tx === ty ? 0 : (tx < ty ? -sign : sign);
  };
}

/** The page after `marker` (an entry's name) in an already sorted list; 404 for an unknown marker. */
function page<T>(sorted: T[], nameOf: (x: T) => string, query: ListQuery, what: string): T[] {
  let start = 0;
  if (query.marker !== undefined) {
    const at = sorted.findIndex((x) => nameOf(x) === query.marker);
    if (at < 0) throw notFound(`The marker ${what} ${query.marker}`);
    start = at + 1;
  }
  return sorted.slice(start, start + query.limit);
}

function checkSortKey(key: string, kind: 'namespace' | 'entry'): void {
  const keys = kind === 'namespace' ? NAMESPACE_SORT_KEYS : ENTRY_SORT_KEYS;
  if (!keys.has(key)) throw fail('bad_metadef', `sort_key must be one of ${[...keys].join(', ')}.`);
}

export class MetadefService {
  constructor(private readonly store: MetadefStore, private readonly now: () => string = () => new Date().toISOString()) {}

  // ---- namespaces ----

  async listNamespaces(caller: Caller, query: NamespaceListQuery): Promise<{ namespaces: MetadefNamespace[]; next?: string }> {
    if (!isAdminCaller(caller) && !hasRole(caller, 'reader')) throw fail('policy_denied', 'Policy does not allow get_metadef_namespaces: listing needs the reader role.');
    checkSortKey(query.sort_key, 'namespace');
    const wanted = query.resource_types ? new Set(query.resource_types) : null;
    const visible = (await this.store.list()).filter((ns) => canSeeNamespace(caller, ns)
      && (!query.visibility || ns.visibility === query.visibility)
      && (!wanted || ns.resource_type_associations.some((a) => wanted.has(a.name))));
    visible.sort(compareBy<MetadefNamespace>(query.sort_key, query.sort_dir, (ns) => ns.namespace));
    const namespaces = page(visible, (ns) => ns.namespace, query, 'namespace');
    const last = namespaces[namespaces.length - 1];
    return { namespaces, ...(last && namespaces.length === query.limit ? { next: last.namespace } : {}) };
  }

  async getNamespace(caller: Caller, name: string): Promise<MetadefNamespace> {
    const ns = await this.store.get(name);
    if (!ns || !canSeeNamespace(caller, ns)) throw nsNotFound(name);
    return ns;
  }

  async createNamespace(caller: Caller, body: NamespaceInput): Promise<MetadefNamespace> {
    requireAdmin(caller, 'add_metadef_namespace');
    checkName(body.namespace, 'namespace');
    const at = this.now();
    const associations = (body.resource_type_associations ?? []).map((a) => this.association(a, at));
    unique(associations, (a) => a.name, 'resource type association');
    const objects = (body.objects ?? []).map((o) => this.buildObject(o, at, at));
    unique(objects, (o) => o.name, 'object');
    const tags = (body.tags ?? []).map((t) => this.tag(t.name, at));
    unique(tags, (t) => t.name, 'tag');
    const ns: MetadefNamespace = {
      id: randomUUID(),
      namespace: body.namespace,
      ...(body.display_name !== undefined ? { display_name: body.display_name } : {}),
      ...(body.description !== undefined ? { description: body.description } : {}),
      visibility: body.visibility ?? 'private',
      protected: body.protected ?? false,
      owner: body.owner ?? caller.project_id,
      created_at: at,
      updated_at: at,
      resource_type_associations: associations,
      properties: propertyDefs(body.properties, 'namespace'),
      objects,
      tags,
      revision: 1,
    };
    capEntries(ns);
    try {
      await this.store.create(ns);
    } catch (err) {
      if (err instanceof MetadefNameTakenError) throw fail('metadef_conflict', `A metadata definition namespace named ${body.namespace} exists already.`);
      throw err;
    }
    await this.recordResourceTypes(associations);
    return ns;
  }

  /**
   * Glance's PUT: the namespace's own attributes are replaced; those left out fall back to the
   * create defaults (visibility private, protected false, owner the caller's project), and the
   * properties, objects, tags and associations stay.
   */
  async updateNamespace(caller: Caller, name: string, body: NamespaceInput): Promise<MetadefNamespace> {
    checkName(body.namespace, 'namespace');
    return this.change(caller, name, 'modify_metadef_namespace', (ns) => {
      ns.namespace = body.namespace;
      if (body.display_name !== undefined) ns.display_name = body.display_name; else delete ns.display_name;
      if (body.description !== undefined) ns.description = body.description; else delete ns.description;
      ns.visibility = body.visibility ?? 'private';
      ns.protected = body.protected ?? false;
      ns.owner = body.owner ?? caller.project_id;
      return ns;
    });
  }

  async deleteNamespace(caller: Caller, name: string): Promise<void> {
    const ns = await this.getNamespace(caller, name);
    requireAdmin(caller, 'delete_metadef_namespace');
    requireProtectedOff(ns, 'it');
    if (!(await this.store.remove(ns))) throw nsNotFound(name);
  }

  /** DELETE …/objects, …/properties, …/tags: everything of one kind (the namespace must not be protected). */
  async clear(caller: Caller, name: string, kind: 'objects' | 'properties' | 'tags'): Promise<void> {
    await this.change(caller, name, 'delete_metadef_namespace', (ns) => {
      requireProtectedOff(ns, `its ${kind}`);
      if (kind === 'properties') ns.properties = {}; else ns[kind] = [];
    });
  }

  // ---- resource types ----

  /** Every reader may list them (Glance's list_metadef_resource_types: ADMIN_OR_PROJECT_READER). */
  async resourceTypes(caller: Caller): Promise<ResourceType[]> {
    if (!isAdminCaller(caller) && !hasRole(caller, 'reader')) throw fail('policy_denied', 'Policy does not allow list_metadef_resource_types: listing needs the reader role.');
    let stored = await this.store.resourceTypes();
    const known = new Set(stored.map((rt) => rt.name));
    const missing = SEEDED_RESOURCE_TYPES.filter((name) => !known.has(name));
    if (missing.length > 0) {
      // The seeded system types are recorded the first time anyone asks (addResourceType keeps the first).
      const at = this.now();
      for (const name of missing) await this.store.addResourceType({ name, created_at: at, updated_at: at });
      stored = await this.store.resourceTypes();
    }
    return stored;
  }

  async associations(caller: Caller, name: string): Promise<ResourceTypeAssociation[]> {
    return (await this.getNamespace(caller, name)).resource_type_associations;
  }

  async associate(caller: Caller, name: string, body: { name: string; prefix?: string; properties_target?: string }): Promise<ResourceTypeAssociation> {
    const association = this.association(body, this.now());
    const made = await this.change(caller, name, 'add_metadef_resource_type_association', (ns) => {
      if (ns.resource_type_associations.some((a) => a.name === association.name)) throw fail('metadef_conflict', `Namespace ${ns.namespace} is already associated with resource type ${association.name}.`);
      ns.resource_type_associations.push(association);
      return association;
    });
    await this.recordResourceTypes([association]);
    return made;
  }

  async dissociate(caller: Caller, name: string, resourceType: string): Promise<void> {
    await this.change(caller, name, 'remove_metadef_resource_type_association', (ns) => {
      const at = ns.resource_type_associations.findIndex((a) => a.name === resourceType);
      if (at < 0) throw notFound(`The association of namespace ${ns.namespace} with resource type ${resourceType}`);
      requireProtectedOff(ns, 'its resource type associations');
      ns.resource_type_associations.splice(at, 1);
    });
  }

  // ---- properties ----

  async properties(caller: Caller, name: string): Promise<Record<string, MetadefPropertyDef>> {
    return (await this.getNamespace(caller, name)).properties;
  }

  /** One property; with `resourceType`, `propertyName` carries that association's prefix (Glance's show). */
  async property(caller: Caller, name: string, propertyName: string, resourceType?: string): Promise<{ name: string; def: MetadefPropertyDef }> {
    const ns = await this.getNamespace(caller, name);
    let key = propertyName;
    if (resourceType) {
      const association = ns.resource_type_associations.find((a) => a.name === resourceType);
      if (!association) throw notFound(`The association of namespace ${name} with resource type ${resourceType}`);
      if (!association.prefix || !propertyName.startsWith(association.prefix)) throw notFound(`Property ${propertyName} (it does not start with the prefix '${association.prefix ?? ''}' of ${resourceType})`);
      key = propertyName.slice(association.prefix.length);
    }
    const def = Object.hasOwn(ns.properties, key) ? ns.properties[key] : undefined;
    if (!def) throw notFound(`Property ${key} in namespace ${name}`);
    return { name: key, def };
  }

  async addProperty(caller: Caller, name: string, body: Record<string, unknown> & { name: string }): Promise<{ name: string; def: MetadefPropertyDef }> {
    checkName(body.name, 'property name');
    const def = propertyDef(body.name, body);
    return this.change(caller, name, 'add_metadef_property', (ns) => {
      if (Object.hasOwn(ns.properties, body.name)) throw fail('metadef_conflict', `Namespace ${ns.namespace} already has a property named ${body.name}.`);
      ns.properties[body.name] = def;
      return { name: body.name, def };
    });
  }

  /** PUT: replaces the definition; a different `name` in the body renames it. */
  async updateProperty(caller: Caller, name: string, propertyName: string, body: Record<string, unknown> & { name: string }): Promise<{ name: string; def: MetadefPropertyDef }> {
    checkName(body.name, 'property name');
    const def = propertyDef(body.name, body);
    return this.change(caller, name, 'modify_metadef_property', (ns) => {
      if (!Object.hasOwn(ns.properties, propertyName)) throw notFound(`Property ${propertyName} in namespace ${ns.namespace}`);
      if (body.name !== propertyName && Object.hasOwn(ns.properties, body.name)) throw fail('metadef_conflict', `Namespace ${ns.namespace} already has a property named ${body.name}.`);
      ns.properties = Object.fromEntries(Object.entries(ns.properties).map(([k, v]) => (k === propertyName ? [body.name, def] : [k, v])));
      return { name: body.name, def };
    });
  }

  async removeProperty(caller: Caller, name: string, propertyName: string): Promise<void> {
    await this.change(caller, name, 'remove_metadef_property', (ns) => {
      if (!Object.hasOwn(ns.properties, propertyName)) throw notFound(`Property ${propertyName} in namespace ${ns.namespace}`);
      requireProtectedOff(ns, `property ${propertyName}`);
      delete ns.properties[propertyName];
    });
  }

  // ---- objects ----

  objects(caller: Caller, name: string, query: ListQuery): Promise<MetadefObject[]> {
    return this.listNamed(caller, name, 'objects', query);
  }

  object(caller: Caller, name: string, objectName: string): Promise<MetadefObject> {
    return this.getNamed(caller, name, 'objects', objectName);
  }

  async addObject(caller: Caller, name: string, body: ObjectInput): Promise<MetadefObject> {
    const at = this.now();
    const object = this.buildObject(body, at, at);
    return this.change(caller, name, 'add_metadef_object', (ns) => {
      if (ns.objects.some((o) => o.name === object.name)) throw fail('metadef_conflict', `Namespace ${ns.namespace} already has an object named ${object.name}.`);
      ns.objects.push(object);
      return object;
    });
  }

  /** PUT: replaces the object (a different `name` renames it); created_at stays. */
  async updateObject(caller: Caller, name: string, objectName: string, body: ObjectInput): Promise<MetadefObject> {
    return this.change(caller, name, 'modify_metadef_object', (ns) => {
      const at = ns.objects.findIndex((o) => o.name === objectName);
      if (at < 0) throw notFound(`Object ${objectName} in namespace ${ns.namespace}`);
      if (body.name !== objectName && ns.objects.some((o) => o.name === body.name)) throw fail('metadef_conflict', `Namespace ${ns.namespace} already has an object named ${body.name}.`);
      const object = this.buildObject(body, ns.objects[at]!.created_at, this.now());
      ns.objects[at] = object;
      return object;
    });
  }

  removeObject(caller: Caller, name: string, objectName: string): Promise<void> {
    return this.removeNamed(caller, name, 'objects', objectName, 'delete_metadef_object');
  }

  // ---- tags ----

  tags(caller: Caller, name: string, query: ListQuery): Promise<MetadefTag[]> {
    return this.listNamed(caller, name, 'tags', query);
  }

  tagNamed(caller: Caller, name: string, tagName: string): Promise<MetadefTag> {
    return this.getNamed(caller, name, 'tags', tagName);
  }

  async addTag(caller: Caller, name: string, tagName: string): Promise<MetadefTag> {
    const tag = this.tag(tagName, this.now());
    return this.change(caller, name, 'add_metadef_tag', (ns) => {
      if (ns.tags.some((t) => t.name === tagName)) throw fail('metadef_conflict', `Namespace ${ns.namespace} already has the tag ${tagName}.`);
      ns.tags.push(tag);
      return tag;
    });
  }

  /** POST …/tags: replaces every tag, or with `append` (X-Openstack-Append) adds to them; a name given twice or already there is a conflict. */
  async addTags(caller: Caller, name: string, names: string[], append: boolean): Promise<MetadefTag[]> {
    const at = this.now();
    const tags = names.map((n) => this.tag(n, at));
    unique(tags, (t) => t.name, 'tag');
    return this.change(caller, name, 'add_metadef_tags', (ns) => {
      if (append) {
        const clash = tags.find((t) => ns.tags.some((old) => old.name === t.name));
        if (clash) throw fail('metadef_conflict', `Namespace ${ns.namespace} already has the tag ${clash.name}.`);
        ns.tags.push(...tags);
      } else if (tags.length > 0) {
        ns.tags = tags;
      } // An empty list replaces nothing, as in Glance: a sync that sends none keeps the tags.
      return tags;
    });
  }

  async renameTag(caller: Caller, name: string, tagName: string, body: { name: string }): Promise<MetadefTag> {
    checkName(body.name, 'tag name');
    return this.change(caller, name, 'modify_metadef_tag', (ns) => {
      const at = ns.tags.findIndex((t) => t.name === tagName);
      if (at < 0) throw notFound(`Tag ${tagName} in namespace ${ns.namespace}`);
      if (body.name !== tagName && ns.tags.some((t) => t.name === body.name)) throw fail('metadef_conflict', `Namespace ${ns.namespace} already has the tag ${body.name}.`);
      const tag = { name: body.name, created_at: ns.tags[at]!.created_at, updated_at: this.now() };
      ns.tags[at] = tag;
      return tag;
    });
  }

  removeTag(caller: Caller, name: string, tagName: string): Promise<void> {
    return this.removeNamed(caller, name, 'tags', tagName, 'delete_metadef_tag');
  }

  // ---- helpers ----

  /** A sorted page of a namespace's objects or tags. */
  private async listNamed<K extends NamedKind>(caller: Caller, name: string, kind: K, query: ListQuery): Promise<MetadefNamespace[K]> {
    checkSortKey(query.sort_key, 'entry');
    const all = [...(await this.getNamespace(caller, name))[kind]].sort(compareBy<{ name: string }>(query.sort_key, query.sort_dir, (e) => e.name));
    return page(all, (e) => e.name, query, NAMED[kind]) as MetadefNamespace[K];
  }

  private async getNamed<K extends NamedKind>(caller: Caller, name: string, kind: K, entryName: string): Promise<MetadefNamespace[K][number]> {
    const found = ((await this.getNamespace(caller, name))[kind] as { name: string }[]).find((e) => e.name === entryName);
    if (!found) throw notFound(`${NAMED[kind]} ${entryName} in namespace ${name}`);
    return found as MetadefNamespace[K][number];
  }

  private async removeNamed(caller: Caller, name: string, kind: NamedKind, entryName: string, action: string): Promise<void> {
    await this.change(caller, name, action, (ns) => {
      const entries: { name: string }[] = ns[kind];
      const at = entries.findIndex((e) => e.name === entryName);
      if (at < 0) throw notFound(`${NAMED[kind]} ${entryName} in namespace ${ns.namespace}`);
      requireProtectedOff(ns, `${NAMED[kind].toLowerCase()} ${entryName}`);
      entries.splice(at, 1);
    });
  }

  /**
   * One change to one namespace: the caller must see it (else 404) and be an admin (else 403);
   * `edit` works on a copy, which replaces the stored namespace only if nobody wrote it
   * meanwhile (else it is read and edited again).
   */
  private async change<T>(caller: Caller, name: string, action: string, edit: (ns: MetadefNamespace) => T): Promise<T> {
    for (let attempt = 0; attempt < WRITE_ATTEMPTS; attempt++) {
      const current = await this.getNamespace(caller, name);
      requireAdmin(caller, action);
      const next = structuredClone(current);
      const result = edit(next);
      next.updated_at = this.now();
      next.revision = current.revision + 1;
      capEntries(next);
      try {
        if (await this.store.replace(current, next)) return result;
      } catch (err) {
        if (err instanceof MetadefNameTakenError) throw fail('metadef_conflict', `A metadata definition namespace named ${next.namespace} exists already.`);
        throw err;
      }
      await sleep(Math.random() * RETRY_PAUSE_MS * Math.min(attempt + 1, 8));
    }
    throw fail('metadef_contention', `Namespace ${name} kept changing under this request; retry.`);
  }

  private association(body: { name: string; prefix?: string; properties_target?: string }, at: string): ResourceTypeAssociation {
    checkName(body.name, 'resource type name');
    return {
      name: body.name,
      ...(body.prefix !== undefined ? { prefix: body.prefix } : {}),
      ...(body.properties_target !== undefined ? { properties_target: body.properties_target } : {}),
      created_at: at,
      updated_at: at,
    };
  }

  private buildObject(body: ObjectInput, createdAt: string, updatedAt: string): MetadefObject {
    checkName(body.name, 'object name');
    return {
      name: body.name,
      ...(body.description !== undefined ? { description: body.description } : {}),
      ...(body.required !== undefined ? { required: body.required } : {}),
      properties: propertyDefs(body.properties, `object ${body.name}`),
      created_at: createdAt,
      updated_at: updatedAt,
    };
  }

  private tag(name: string, at: string): MetadefTag {
    checkName(name, 'tag name');
    return { name, created_at: at, updated_at: at };
  }

  private async recordResourceTypes(associations: ResourceTypeAssociation[]): Promise<void> {
    for (const a of associations) await this.store.addResourceType({ name: a.name, created_at: a.created_at, updated_at: a.created_at });
  }
}

/** Applies a resource type's prefix to a namespace's property names (Glance's show with ?resource_type=). */
export function withPrefix(ns: MetadefNamespace, resourceType: string | undefined): MetadefNamespace {
  const prefix = resourceType ? ns.resource_type_associations.find((a) => a.name === resourceType)?.prefix : undefined;
  if (!prefix) return ns;
  const prefixed = (defs: Record<string, MetadefPropertyDef> | undefined) => Object.fromEntries(Object.entries(defs ?? {}).map(([k, v]) => [prefix + k, v]));
  return {
    ...ns,
    properties: prefixed(ns.properties),
    objects: ns.objects.map((o) => ({ ...o, properties: prefixed(o.properties), ...(o.required ? { required: o.required.map((r) => prefix + r) } : {}) })),
  };
}
