/**
 * Glance's metadata definitions catalog (/v2/metadefs): the port its stores implement, one
 * adapter per mode (infra/embedded/sqlite-metadef-store.ts, infra/mongo/mongo-metadef-store.ts),
 * both held to test/contract/metadef-store.contract.ts.
 *
 * A namespace is stored as one document holding everything in it (properties, objects, tags,
 * resource type associations): a namespace is small (Glance's own catalog has at most a few
 * dozen entries in one) and is read whole by its main reader (GET …/namespaces/{ns}), so one
 * compare-and-set per change keeps the namespace and its parts consistent without transactions.
 */

/** A property definition: a JSON-schema fragment (title, type, enum, minimum…), kept as given once validated. */
export type MetadefPropertyDef = Record<string, unknown> & { title: string; type: string | null };

export interface MetadefObject {
  name: string;
  description?: string;
  required?: string[];
  properties?: Record<string, MetadefPropertyDef>;
  created_at: string;
  updated_at: string;
}

export interface MetadefTag {
  name: string;
  created_at: string;
  updated_at: string;
}

/** Where the namespace applies: a resource type (OS::Glance::Image…) and the key prefix used there. */
export interface ResourceTypeAssociation {
  name: string;
  prefix?: string;
  properties_target?: string;
  created_at: string;
  updated_at: string;
}

export interface MetadefNamespace {
  /** Stable across renames; never shown (Glance's API names a namespace by its `namespace`). */
  id: string;
  namespace: string;
  display_name?: string;
  description?: string;
  visibility: 'public' | 'private';
  protected: boolean;
  owner: string;
  created_at: string;
  updated_at: string;
  resource_type_associations: ResourceTypeAssociation[];
  properties: Record<string, MetadefPropertyDef>;
  objects: MetadefObject[];
  tags: MetadefTag[];
  /** 1 when created, +1 by every change: the compare-and-set token of replace(). */
  revision: number;
}

/** A resource type known to the catalog (Glance creates one the first time a namespace is associated with it). */
export interface ResourceType {
  name: string;
  created_at: string;
  updated_at: string;
}

export class MetadefNameTakenError extends Error {
  constructor(readonly namespace: string) {
    super(`a metadata definition namespace named ${namespace} exists already`);
    this.name = 'MetadefNameTakenError';
  }
}

export interface MetadefStore {
  /** Writes a new namespace (revision 1). MetadefNameTakenError when the name is in use. */
  create(ns: MetadefNamespace): Promise<void>;
  /** The namespace of that name, as last written, or null. Names are case-sensitive. */
  get(namespace: string): Promise<MetadefNamespace | null>;
  /** Every namespace (the service filters, sorts and pages: there are tens, not millions). */
  list(): Promise<MetadefNamespace[]>;
  /**
   * Writes `next` (same id, revision current.revision + 1) only if the namespace is still at
   * `current.revision`: false when another write got there first (the caller reads again and
   * retries) or it was deleted. A changed `namespace` (a rename) is claimed atomically:
   * MetadefNameTakenError if another namespace holds it, and the old name is free afterwards.
   * Exactly one of concurrent writers of one revision wins, on every adapter.
   */
  replace(current: MetadefNamespace, next: MetadefNamespace): Promise<boolean>;
  /** Deletes the namespace (its name becomes free); false if it was not there. */
  remove(ns: MetadefNamespace): Promise<boolean>;
  /** Every resource type, by name. */
  resourceTypes(): Promise<ResourceType[]>;
  /** Records a resource type if it is new (an existing one keeps its created_at). */
  addResourceType(rt: ResourceType): Promise<void>;
  close(): Promise<void>;
}
