/** Share links (issue 11: POST/GET/DELETE /v2/images/{id}/share-links): create with an expiry, copy the URL (shown once), revoke. */
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, getJson, sendJson, type Image } from './api';
import { LIMITS } from '../../core/limits';
import { when } from './format';

/** The API's own bound on expires_in (30 days), in the form's unit. */
const MAX_HOURS = LIMITS.shareLinkMaxSeconds / 3600;
const RANGE = `A share link lasts from 1 to ${MAX_HOURS} hours (${LIMITS.shareLinkMaxSeconds / 86400} days)`;

/** Why the form cannot be sent, in hours; null when it can. */
function hoursProblem(hours: number): string | null {
  if (Number.isInteger(hours) && hours >= 1 && hours <= MAX_HOURS) return null;
  return `${RANGE}: enter a whole number of hours from 1 to ${MAX_HOURS}.`;
}

/** PIR's answer in words for this form: its schema refusal names seconds ("body/expires_in must be <= …"), the form speaks hours. */
function refusal(err: unknown): string {
  if (err instanceof ApiError && err.code === 'invalid_request') return `PIR refused this expiry. ${RANGE}.`;
  return (err as Error).message;
}

interface Link { id: string; expires_at: string; created_at?: string; uses?: number; url?: string }

export function ShareLinks({ image, editable }: { image: Image; editable: boolean }) {
  const [links, setLinks] = useState<Link[]>([]);
  const [created, setCreated] = useState<Link | null>(null);
  const [error, setError] = useState('');
  const [invalid, setInvalid] = useState(false);
  const base = `/v2/images/${encodeURIComponent(image.id)}/share-links`;
  const reload = () => getJson<{ share_links: Link[] }>(base).then((r) => setLinks(r.share_links ?? []), (e: Error) => setError(e.message));
  useEffect(() => { if (editable) void reload(); }, [image.id]);
  if (!editable || image.status !== 'active') return null;
  const create = async (e: Event) => {
    e.preventDefault();
    const hours = Number(new FormData(e.currentTarget as HTMLFormElement).get('hours') ?? 24);
    const problem = hoursProblem(hours);
    setError(problem ?? ''); setInvalid(problem !== null);
    if (problem) return;
    try { setCreated(await sendJson<Link>('POST', base, { expires_in: hours * 3600 })); await reload(); } catch (err) { setError(refusal(err)); setInvalid(err instanceof ApiError && err.code === 'invalid_request'); }
  };
  const absolute = (url: string) => new URL(url, location.origin).href;
  return (
    <section aria-labelledby="h-share" id="share-links"><h2 id="h-share">Share links</h2>
      <p class="problem" role="alert" id="share-error">{error}</p>
      {/* noValidate: the range is checked in create(), with a message in words, rather than by the browser's bubble. */}
      <form class="inline" onSubmit={create} noValidate>
        <label>Expires in (hours) <input name="hours" id="share-hours" type="number" min={1} max={MAX_HOURS} step={1} defaultValue={24} aria-invalid={invalid ? 'true' : undefined} aria-describedby="share-error" /></label> <button type="submit" id="share-create">Create link</button>
      </form>
      {created?.url && (
        <p class="note" role="status"><label for="share-url">New link (shown once)</label> <input readOnly id="share-url" value={absolute(created.url)} size={60} onFocus={(e) => e.currentTarget.select()} />
          <button type="button" onClick={() => navigator.clipboard?.writeText(absolute(created.url!))}>Copy</button></p>
      )}
      <ul>{links.map((l) => (
        <li key={l.id} data-link={l.id}>expires {when(l.expires_at)}{l.uses !== undefined ? ` · used ${l.uses}×` : ''}
          <button type="button" class="link danger" onClick={async () => { await api(`${base}/${encodeURIComponent(l.id)}`, { method: 'DELETE' }); await reload(); }}>revoke</button></li>
      ))}</ul>
    </section>
  );
}
