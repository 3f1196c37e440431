/** Share links (issue 11: POST/GET/DELETE /v2/images/{id}/share-links): create with an expiry, copy the URL (shown once), revoke. */
import { useEffect, useState } from 'preact/hooks';
import { api, getJson, sendJson, type Image } from './api';
import { when } from './format';

interface Link { id: string; expires_at: string; created_at?: string; uses?: number; url?: string }

export function ShareLinks({ image, editable }: { image: Image; editable: boolean }) {
  const [links, setLinks] = useState<Link[]>([]);
  const [created, setCreated] = useState<Link | null>(null);
  const [error, setError] = useState('');
  const base = `/v2/images/${encodeURIComponent(image.id)}/share-links`;
  const reload = () => getJson<{ share_links: Link[] }>(base).then((r) => setLinks(r.share_links ?? []), (e: Error) => setError(e.message));
  useEffect(() => { if (editable) void reload(); }, [image.id]);
  if (!editable || image.status !== 'active') return null;
  const create = async (e: Event) => {
    e.preventDefault();
    const hours = Number(new FormData(e.currentTarget as HTMLFormElement).get('hours') ?? 24);
    try { setCreated(await sendJson<Link>('POST', base, { expires_in: Math.round(hours * 3600) })); await reload(); } catch (err) { setError((err as Error).message); }
  };
  const absolute = (url: string) => new URL(url, location.origin).href;
  return (
    <section aria-labelledby="h-share" id="share-links"><h2 id="h-share">Share links</h2>
      {error && <p class="problem">{error}</p>}
      <form class="inline" onSubmit={create}>
        <label>Expires in (hours) <input name="hours" type="number" min={1} max={8760} value={24} /></label> <button type="submit" id="share-create">Create link</button>
      </form>
      {created?.url && (
        <p class="note" role="status">New link (shown once): <input readOnly id="share-url" value={absolute(created.url)} size={60} onFocus={(e) => e.currentTarget.select()} />
          <button type="button" onClick={() => navigator.clipboard?.writeText(absolute(created.url!))}>Copy</button></p>
      )}
      <ul>{links.map((l) => (
        <li key={l.id} data-link={l.id}>expires {when(l.expires_at)}{l.uses !== undefined ? ` · used ${l.uses}×` : ''}
          <button type="button" class="link danger" onClick={async () => { await api(`${base}/${encodeURIComponent(l.id)}`, { method: 'DELETE' }); await reload(); }}>revoke</button></li>
      ))}</ul>
    </section>
  );
}
