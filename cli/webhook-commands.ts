/**
 * `pir webhook …`: add, list, show, update, remove, ping, deliveries, redeliver, rotate. The
 * signing secret is printed only by add and rotate (the server shows it nowhere else).
 */
import { Command } from 'commander';
import { WebhooksApi, type Delivery, type Webhook, type WebhookFilters, type WebhookInput } from '../client/index.js';
import { collect, positiveInt } from './args.js';
import { contextOf } from './context.js';
import { UsageError } from './exit-codes.js';
import { printList, printRecord, type Format } from './output.js';

const EVENTS_HELP = 'image.created, image.active, image.killed, image.deactivated, image.reactivated, image.updated, image.deleted, image.member.created|updated|deleted, or image.*, image.member.*';

interface FilterOptions {
  tag: string[];
  visibility: string[];
  imageId: string[];
  namePrefix?: string;
}

function filtersOf(o: FilterOptions): WebhookFilters | undefined {
  const f: WebhookFilters = {};
  if (o.tag.length) f.tags = o.tag;
  if (o.visibility.length) f.visibility = o.visibility;
  if (o.imageId.length) f.image_ids = o.imageId;
  if (o.namePrefix !== undefined) f.name_prefix = o.namePrefix;
  return Object.keys(f).length ? f : undefined;
}

const withFilterOptions = (c: Command) => c
  .option('--tag <tag>', 'only images with this tag (repeatable: all must be present)', collect, [])
  .option('--visibility <v>', 'only images of this visibility (repeatable: any of)', collect, [])
  .option('--image-id <id>', 'only this image (repeatable: any of)', collect, [])
  .option('--name-prefix <prefix>', 'only images whose name starts with this');

/** A webhook for people: filters and the failure state on one line each. */
function printWebhook(w: Webhook, format: Format): void {
  if (format !== 'table') return printRecord(w, format);
  const { self: _s, deliveries: _d, schema: _sc, ...rest } = w;
  printRecord(rest, format);
  if (w.secret) process.stderr.write('Keep the secret now: PIR shows it only here (and at the next rotation).\n');
}

const lastAttempt = (d: Delivery) => d.attempts[d.attempts.length - 1];

export function webhookCommand(): Command {
  const webhook = new Command('webhook').description('manage webhook subscriptions and their deliveries (Standard Webhooks, signed)');

  webhook.addCommand(withFilterOptions(new Command('add')
    .description('subscribe a URL to image events; prints the signing secret (whsec_…) once')
    .argument('<endpoint>', 'the URL to POST the events to (https, unless the operator allows the destination)')
    .option('--event <type>', `an event to receive (repeatable; default image.active): ${EVENTS_HELP}`, collect, [])
    .option('--description <text>', 'a note for people')
    .option('--all-projects', "receive every project's images (administrators only)")
    .option('--disabled', 'create it disabled'))
    .action(async (endpoint: string, o: FilterOptions & { event: string[]; description?: string; allProjects?: boolean; disabled?: boolean }, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      const input: WebhookInput = { url: endpoint, events: o.event.length ? o.event : ['image.active'] };
      if (o.description !== undefined) input.description = o.description;
      const filters = filtersOf(o);
      if (filters) input.filters = filters;
      if (o.allProjects) input.all_projects = true;
      if (o.disabled) input.enabled = false;
      printWebhook(await new WebhooksApi(client).create(input), format);
    }));

  webhook.addCommand(new Command('list')
    .description("list the project's webhooks (administrators: every project's)")
    .option('--limit <n>', 'at most this many', positiveInt)
    .action(async (o: { limit?: number }, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      const list = await new WebhooksApi(client).list(o.limit);
      printList(list.map((w) => ({ ...w, events: w.events.join(','), disabled_reason: w.disabled_reason ?? '' })), ['id', 'url', 'events', 'enabled', 'consecutive_failures', 'disabled_reason'], format);
    }));

  webhook.addCommand(new Command('show')
    .description('show one webhook, with why it was disabled if it was')
    .argument('<id>', 'webhook id')
    .action(async (id: string, _o, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      printWebhook(await new WebhooksApi(client).get(id), format);
    }));

  webhook.addCommand(withFilterOptions(new Command('update')
    .description('change a webhook: URL, events, description, filters (replaced as a whole when any filter flag is given), enabled')
    .argument('<id>', 'webhook id')
    .option('--endpoint <url>', 'a new URL to POST the events to (--url is PIR\'s own address)')
    .option('--event <type>', 'the new event list (repeatable)', collect, [])
    .option('--description <text>', 'a new description')
    .option('--enable', 'enable it again (clears the failure count and reason)')
    .option('--disable', 'stop deliveries'))
    .action(async (id: string, o: FilterOptions & { endpoint?: string; event: string[]; description?: string; enable?: boolean; disable?: boolean }, cmd: Command) => {
      if (o.enable && o.disable) throw new UsageError('--enable and --disable exclude each other');
      const { client, format } = await contextOf(cmd);
      const input: WebhookInput = {};
      if (o.endpoint !== undefined) input.url = o.endpoint;
      if (o.event.length) input.events = o.event;
      if (o.description !== undefined) input.description = o.description;
      const filters = filtersOf(o);
      if (filters) input.filters = filters;
      if (o.enable || o.disable) input.enabled = Boolean(o.enable);
      if (Object.keys(input).length === 0) throw new UsageError('nothing to change: give --endpoint, --event, --description, a filter, --enable or --disable');
      printWebhook(await new WebhooksApi(client).update(id, input), format);
    }));

  webhook.addCommand(new Command('remove').alias('delete')
    .description('delete webhooks (their delivery records go with them)')
    .argument('<id...>', 'webhook ids')
    .action(async (ids: string[], _o, cmd: Command) => {
      const { client } = await contextOf(cmd);
      const api = new WebhooksApi(client);
      for (const id of ids) {
        await api.remove(id);
        process.stderr.write(`removed webhook ${id}\n`);
      }
    }));

  webhook.addCommand(new Command('ping')
    .description('send a webhook.ping event now; prints the delivery (follow it with `pir webhook deliveries`)')
    .argument('<id>', 'webhook id')
    .action(async (id: string, _o, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      printDelivery(await new WebhooksApi(client).ping(id), format);
    }));

  webhook.addCommand(new Command('deliveries')
    .description('list a webhook\'s deliveries, newest first: status, attempts, the last answer, the next attempt')
    .argument('<id>', 'webhook id')
    .option('--limit <n>', 'at most this many (default 50)', positiveInt, 50)
    .action(async (id: string, o: { limit: number }, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      const list = await new WebhooksApi(client).deliveries(id, o.limit);
      if (format !== 'table') return printList(list as unknown as Record<string, unknown>[], [], format);
      printList(list.map((d) => {
        const last = lastAttempt(d);
        return {
          id: d.id, event: d.event_type, status: d.status, attempts: d.attempts.length, created_at: d.created_at,
          last_answer: last ? (last.status !== null ? `HTTP ${last.status}` : last.error ?? '') : '',
          latency_ms: last?.latency_ms ?? '', next_attempt_at: d.next_attempt_at ?? '',
        };
      }), ['id', 'event', 'status', 'attempts', 'last_answer', 'latency_ms', 'created_at', 'next_attempt_at'], format);
    }));

  webhook.addCommand(new Command('redeliver')
    .description('send a delivery again: the same body and webhook-id, fresh signatures, a new run of the retry schedule')
    .argument('<id>', 'webhook id')
    .argument('<delivery-id>', 'delivery id (msg_…), from `pir webhook deliveries`')
    .action(async (id: string, deliveryId: string, _o, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      printDelivery(await new WebhooksApi(client).redeliver(id, deliveryId), format);
    }));

  webhook.addCommand(new Command('rotate')
    .description('rotate the signing secret; prints the new one (the old one keeps signing beside it for the grace period)')
    .argument('<id>', 'webhook id')
    .action(async (id: string, _o, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      printWebhook(await new WebhooksApi(client).rotateSecret(id), format);
    }));

  return webhook;
}

function printDelivery(d: Delivery, format: Format): void {
  if (format !== 'table') return printRecord(d as unknown as Record<string, unknown>, format);
  printRecord({ id: d.id, webhook_id: d.webhook_id, event_type: d.event_type, status: d.status, attempts: d.attempts.length, redeliveries: d.redeliveries, created_at: d.created_at, next_attempt_at: d.next_attempt_at }, format);
}
