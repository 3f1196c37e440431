/**
 * Live updates: GET /v2/events read with fetch (so the token goes in X-Auth-Token, never in the
 * URL as EventSource would need), reconnecting on its own. One stream per signed-in tab.
 */
import { fetchEventSource } from '@microsoft/fetch-event-source';
import type { Image } from './api';

export interface Hello { project_id: string; user_id: string; roles: string[] }
export interface LiveHandlers {
  hello(caller: Hello): void;
  image(type: string, image: Image): void;
  state(connected: boolean): void;
}

class Fatal extends Error {}

export function watchEvents(token: string, handlers: LiveHandlers): () => void {
  const stop = new AbortController();
  void fetchEventSource('/v2/events', {
    headers: { 'X-Auth-Token': token },
    signal: stop.signal,
    openWhenHidden: true,
    async onopen(response) {
      if (response.ok && (response.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
        handlers.state(true);
        return;
      }
      throw new Fatal(`event stream refused: HTTP ${response.status}`);
    },
    onmessage(message) {
      if (!message.data) return;
      const body = JSON.parse(message.data) as Record<string, unknown>;
      if (message.event === 'pir.hello') handlers.hello(body as unknown as Hello);
      else handlers.image(String(body.type), body.data as Image);
    },
    onclose() {
      handlers.state(false); // the server ended it (restart): reconnect
    },
    onerror(error) {
      handlers.state(false);
      if (error instanceof Fatal) throw error; // 401, 404: retrying cannot help
      return 3000;
    },
  }).catch(() => handlers.state(false));
  return () => stop.abort();
}
