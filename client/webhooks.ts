/** The webhooks extension (/v2/webhooks) for PIR's client: typed calls over PirClient. */
import { queryString, type PirClient } from './client.js';

export interface WebhookFilters {
  tags?: string[];
  visibility?: string[];
  image_ids?: string[];
  name_prefix?: string;
}

export interface Webhook {
  id: string;
  url: string;
  events: string[];
  description: string | null;
  filters: WebhookFilters;
  enabled: boolean;
  all_projects: boolean;
  project_id: string;
  disabled_reason: string | null;
  disabled_at: string | null;
  consecutive_failures: number;
  secret_rotated_at: string;
  created_at: string;
  updated_at: string;
  /** Only in the answers of create and rotate-secret. */
  secret?: string;
  [field: string]: unknown;
}

export interface DeliveryAttempt {
  attempt: number;
  at: string;
  status: number | null;
  error: string | null;
  latency_ms: number;
  next_attempt_at: string | null;
}

export interface Delivery {
  id: string;
  webhook_id: string;
  event_id: string;
  event_type: string;
  created_at: string;
  status: 'pending' | 'delivered' | 'failed';
  redeliveries: number;
  next_attempt_at: string | null;
  attempts: DeliveryAttempt[];
}

export interface WebhookInput {
  url?: string;
  events?: string[];
  description?: string;
  filters?: WebhookFilters;
  enabled?: boolean;
  all_projects?: boolean;
}

const path = (id: string) => `/v2/webhooks/${encodeURIComponent(id)}`;

export class WebhooksApi {
  constructor(private readonly client: PirClient) {}

  create(input: WebhookInput): Promise<Webhook> {
    return this.client.request<Webhook>('POST', '/v2/webhooks', input, [201]);
  }

  get(id: string): Promise<Webhook> {
    return this.client.request<Webhook>('GET', path(id));
  }

  update(id: string, input: WebhookInput): Promise<Webhook> {
    return this.client.request<Webhook>('PATCH', path(id), input);
  }

  async remove(id: string): Promise<void> {
    await this.client.request('DELETE', path(id), undefined, [204]);
  }

  rotateSecret(id: string): Promise<Webhook> {
    return this.client.request<Webhook>('POST', `${path(id)}/rotate-secret`);
  }

  ping(id: string): Promise<Delivery> {
    return this.client.request<Delivery>('POST', `${path(id)}/ping`, undefined, [202]);
  }

  redeliver(id: string, deliveryId: string): Promise<Delivery> {
    return this.client.request<Delivery>('POST', `${path(id)}/deliveries/${encodeURIComponent(deliveryId)}/redeliver`, undefined, [202]);
  }

  /** Every webhook the caller may see, page after page (up to `max`). */
  list(max = Infinity): Promise<Webhook[]> {
    return this.pages<Webhook>('/v2/webhooks', 'webhooks', max);
  }

  /** A webhook's deliveries, newest first (up to `max`). */
  deliveries(id: string, max = Infinity): Promise<Delivery[]> {
    return this.pages<Delivery>(`${path(id)}/deliveries`, 'deliveries', max);
  }

  private async pages<T>(first: string, key: string, max: number): Promise<T[]> {
    const out: T[] = [];
    let next: string | undefined = first + queryString({ limit: Number.isFinite(max) ? Math.min(200, max) : 200 });
    while (next && out.length < max) {
      const body: Record<string, unknown> = await this.client.request('GET', next);
      const items = (body[key] as T[]) ?? [];
      out.push(...items);
      next = items.length ? (body.next as string | undefined) : undefined;
    }
    return out.slice(0, max);
  }
}
