/** Glance's metadata definitions catalog (/v2/metadefs) for PIR's client: typed calls over PirClient. */
import { queryString, type PirClient } from './client.js';

export interface MetadefNamespace {
  namespace: string;
  display_name?: string;
  description?: string;
  visibility: 'public' | 'private';
  protected: boolean;
  owner: string;
  resource_type_associations?: { name: string; prefix?: string; properties_target?: string }[];
  properties?: Record<string, Record<string, unknown>>;
  objects?: Record<string, unknown>[];
  tags?: { name: string }[];
  [field: string]: unknown;
}

const path = (namespace: string) => `/v2/metadefs/namespaces/${encodeURIComponent(namespace)}`;

/** What the server adds to what was written: links, schema and timestamps (Glance's export leaves them out too). */
const SERVER_FIELDS = new Set(['self', 'schema', 'created_at', 'updated_at']);

/** A namespace as a file `import` (and `glance md-namespace-import`) takes back: without the server's fields, at any depth of its lists. */
export function exportable(ns: MetadefNamespace): Record<string, unknown> {
  const strip = (record: Record<string, unknown>) => Object.fromEntries(Object.entries(record).filter(([k]) => !SERVER_FIELDS.has(k)));
  const out = strip(ns);
  for (const key of ['resource_type_associations', 'objects', 'tags'] as const) {
    if (Array.isArray(ns[key])) out[key] = (ns[key] as Record<string, unknown>[]).map(strip);
  }
  return out;
}

export class MetadefsApi {
  constructor(private readonly client: PirClient) {}

  create(body: Record<string, unknown>): Promise<MetadefNamespace> {
    return this.client.request<MetadefNamespace>('POST', '/v2/metadefs/namespaces', body, [201]);
  }

  get(namespace: string, resourceType?: string): Promise<MetadefNamespace> {
    return this.client.request<MetadefNamespace>('GET', path(namespace) + queryString({ resource_type: resourceType }));
  }

  update(namespace: string, body: Record<string, unknown>): Promise<MetadefNamespace> {
    return this.client.request<MetadefNamespace>('PUT', path(namespace), body);
  }

  async remove(namespace: string): Promise<void> {
    await this.client.request('DELETE', path(namespace), undefined, [204]);
  }

  /** Every namespace the caller may see, page after page. */
  async list(filters: { resource_types?: string; visibility?: string } = {}): Promise<MetadefNamespace[]> {
    const out: MetadefNamespace[] = [];
    let next: string | undefined = '/v2/metadefs/namespaces' + queryString({ limit: 1000, sort_key: 'namespace', sort_dir: 'asc', ...filters });
    while (next) {
      const body: { namespaces?: MetadefNamespace[]; next?: string } = await this.client.request('GET', next);
      const page = body.namespaces ?? [];
      out.push(...page);
      next = page.length ? body.next : undefined;
    }
    return out;
  }
}
