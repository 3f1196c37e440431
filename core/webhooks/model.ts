/** Webhook subscriptions and deliveries, and the port that stores them (SQLite or MongoDB). */

export const WEBHOOK_EVENTS = [
  'image.created', 'image.active', 'image.killed', 'image.deactivated', 'image.reactivated', 'image.updated', 'image.deleted',
  'image.member.created', 'image.member.updated', 'image.member.deleted',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENTS)[number];
/** What a subscription may ask for: an event type, or a prefix with '*' ("image.*", "image.member.*"). */
export const EVENT_PATTERN = /^image\.(?:[a-z_]+\.)*(?:[a-z_]+|\*)$/;

export interface WebhookFilters {
  tags?: string[];
  visibility?: string[];
  image_ids?: string[];
  name_prefix?: string;
}

/** A signing secret, encrypted (secret-box.ts); an old one signs beside the new until expires_at. */
export interface StoredSecret {
  enc: string;
  created_at: string;
  expires_at: string | null;
}

export interface Subscription {
  id: string;
  project_id: string;
  user_id: string;
  /** Admin subscriptions may receive events of every project's images. */
  all_projects: boolean;
  url: string;
  events: string[];
  description: string;
  filters: WebhookFilters;
  enabled: boolean;
  disabled_reason: string | null;
  disabled_at: string | null;
  consecutive_failures: number;
  secrets: StoredSecret[];
  created_at: string;
  updated_at: string;
}

export interface Attempt {
  attempt: number;
  at: string;
  /** The receiver's HTTP status, or null when no answer came. */
  status: number | null;
  error: string | null;
  latency_ms: number;
  /** When the next attempt is due, or null when this was the last. */
  next_attempt_at: string | null;
}

export type DeliveryStatus = 'pending' | 'delivered' | 'failed';

export interface Delivery {
  /** Also the `webhook-id` header: stable across retries and redeliveries. */
  id: string;
  subscription_id: string;
  event_id: string;
  event_type: string;
  /** The exact body sent (JSON text), fixed at fan-out so every attempt signs the same bytes. */
  payload: string;
  traceparent: string | null;
  created_at: string;
  status: DeliveryStatus;
  /** How many times the delivery was started again by hand (each a new job). */
  redeliveries: number;
  attempts: Attempt[];
}

export interface WebhookStore {
  /**
   * Runs `fn` while no other `exclusive` of the same key runs, in this process or any other
   * sharing the store (`what` names it in a refusal): an owner's changes of one webhook, and a
   * project's creates (its cap), one at a time.
   */
  exclusive<T>(key: string, what: string, fn: () => Promise<T>): Promise<T>;
  createSubscription(sub: Subscription): Promise<void>;
  getSubscription(id: string): Promise<Subscription | null>;
  /** Ordered by id; `projectId` null lists every project's (admins). */
  listSubscriptions(projectId: string | null, limit: number, after?: string): Promise<Subscription[]>;
  enabledSubscriptions(): Promise<Subscription[]>;
  replaceSubscription(sub: Subscription): Promise<void>;
  /** Removes the subscription and its deliveries. */
  deleteSubscription(id: string): Promise<boolean>;
  recordSuccess(id: string): Promise<void>;
  /** Counts a failed delivery; disables with `reason` once `disableAfter` failed in a row. True if now disabled. */
  recordFailure(id: string, disableAfter: number, reason: string, at: string): Promise<boolean>;
  disable(id: string, reason: string, at: string): Promise<void>;
  /** False when a delivery with this id exists already (a repeated event). */
  addDelivery(delivery: Delivery): Promise<boolean>;
  /**
   * Adds many deliveries at once (one event's fan-out: one write for all its subscribers rather
   * than one each); returns the ids that existed already (a repeated event). All-or-nothing is not
   * promised: on an error, some may have been added (the fan-out runs again and skips those).
   */
  addDeliveries(deliveries: Delivery[]): Promise<Set<string>>;
  /**
   * Adds a delivery whose first attempt was made (its status and attempts say how it went); many
   * such calls at once may go out as one write (group commit), each resolving once its record is
   * written. False when the delivery existed already: the attempt is appended to it instead.
   */
  addAttempted(delivery: Delivery): Promise<boolean>;
  getDelivery(id: string): Promise<Delivery | null>;
  /**
   * Appends an attempt and sets the status (one worker at a time handles a delivery), except that
   * 'pending' (a retry scheduled) leaves the status as it is: a job that froze, lost its lock and
   * woke after its delivery was given up (failed) must not reopen it, as nothing would send it
   * again. A redelivery reopens a delivery itself (restartDelivery).
   */
  recordAttempt(id: string, attempt: Attempt, status: DeliveryStatus): Promise<void>;
  /** Marks a delivery pending again for a redelivery; returns its new redelivery count. */
  restartDelivery(id: string): Promise<number>;
  /** Newest first; `after` is the id of the last delivery of the previous page. */
  listDeliveries(subscriptionId: string, limit: number, after?: string): Promise<Delivery[]>;
  /** Deletes at most `limit` deliveries created before the instant that are not pending; returns how many. */
  deleteEndedDeliveries(createdBefore: string, limit: number): Promise<number>;
  close(): Promise<void>;
}
