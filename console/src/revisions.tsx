/** Metadata history (issue 11's /v2/images/{id}/revisions), shown when PIR serves it: each change, and a diff of a revision against now. */
import { useEffect, useState } from 'preact/hooks';
import { ApiError, getJson, isNoRoute, sendJson, type Image } from './api';
import type { Features } from './features';
import { visible, when } from './format';

interface Revision { n: number; at: string; project_id: string; user_id: string; action?: string; patch: unknown[]; metadata?: Record<string, unknown> }

export function Revisions({ image, editable, act }: { image: Image; features: Features; editable: boolean; act: (fn: () => Promise<unknown>, done: string) => Promise<void> }) {
  const [revisions, setRevisions] = useState<Revision[] | null>(null);
  const [absent, setAbsent] = useState(false);
  const [diff, setDiff] = useState<{ n: number; rows: [string, unknown, unknown][] } | null>(null);
  const base = `/v2/images/${encodeURIComponent(image.id)}/revisions`;
  useEffect(() => {
    // The page asks only for the owner project or an admin (maySeeRevisions); a 403 still (roles changed) shows nothing, as a PIR without revisions.
    getJson<{ revisions: Revision[] }>(`${base}?limit=100`).then((r) => { setAbsent(false); setRevisions(r.revisions); }, (e) => {
      if (isNoRoute(e) || (e instanceof ApiError && (e.status === 403 || e.status === 404))) setAbsent(true); else setRevisions([]);
    });
  }, [image.id, image.updated_at]);
  if (absent || revisions === null) return null; // this PIR keeps no revisions, or they are not the caller's to see
  const show = async (n: number) => {
    const then = (await getJson<Revision>(`${base}/${n}`)).metadata ?? {};
    const now = image as Record<string, unknown>;
    const keys = [...new Set([...Object.keys(then), ...Object.keys(now)])].filter((k) => !k.startsWith('pir_') && !['updated_at', 'self', 'file', 'schema'].includes(k)).sort();
    setDiff({ n, rows: keys.filter((k) => JSON.stringify(then[k]) !== JSON.stringify(now[k])).map((k) => [k, then[k], now[k]]) });
  };
  return (
    <section aria-labelledby="h-revisions" id="revisions"><h2 id="h-revisions">Revisions</h2>
      <ol class="revisions">
        {revisions.map((r) => (
          <li key={r.n} data-revision={r.n}>
            <button type="button" class="link" onClick={() => show(r.n)}>#{r.n}</button> {when(r.at)} · {r.action ?? 'change'} by <bdi class="mono">{visible(r.user_id)}</bdi> (<bdi>{visible(r.project_id)}</bdi>)
            <code class="patch" dir="ltr">{visible(JSON.stringify(r.patch))}</code>
          </li>
        ))}
      </ol>
      {diff && (
        <div class="diff" id="revision-diff">
          <h3>Revision #{diff.n} compared with now</h3>
          {diff.rows.length === 0 ? <p class="muted">Same metadata as now.</p> : (
            <table><thead><tr><th>field</th><th>then</th><th>now</th></tr></thead>
              <tbody>{diff.rows.map(([k, a, b]) => <tr><td class="mono"><bdi>{visible(k)}</bdi></td><td class="del"><bdi>{a === undefined ? '—' : visible(JSON.stringify(a))}</bdi></td><td class="ins"><bdi>{b === undefined ? '—' : visible(JSON.stringify(b))}</bdi></td></tr>)}</tbody></table>
          )}
          {editable && <button type="button" onClick={() => act(() => sendJson('POST', `${base}/${diff.n}/restore`, {}), `Restored revision #${diff.n}.`)}>Restore this revision</button>}
        </div>
      )}
    </section>
  );
}
