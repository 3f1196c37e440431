import { randomUUID } from 'node:crypto';
import { EVENT_VERSION, type EventPayloads, type EventType, type PirEvent } from '../schemas/events.js';

export interface NewEvent<T extends EventType = EventType> {
  type: T;
  data: EventPayloads[T];
}

export const event = <T extends EventType>(type: T, data: EventPayloads[T]): NewEvent<T> => ({ type, data });

export function materialize(imageId: string, pending: NewEvent, occurredAt: string, traceparent?: string): PirEvent {
  return {
    id: randomUUID(),
    type: pending.type,
    version: EVENT_VERSION,
    image_id: imageId,
    occurred_at: occurredAt,
    data: pending.data,
    ...(traceparent ? { traceparent } : {}),
  };
}
