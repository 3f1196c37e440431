/**
 * One image: its metadata, properties (editable by JSON Patch when the caller may), tags,
 * members, the pipeline timeline with a refusal in plain words, checksums, download, and, when
 * this PIR has them, revisions with a diff and share links. Live events refresh it.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, getJson, isNoRoute, patchImage, sendJson, type Image, type Member } from './api';
import { bytes, visible, when } from './format';
import type { Features } from './features';
import type { Hello } from './live';
import type { LiveBus } from './live-bus';
import { Timeline } from './timeline';
import { Revisions } from './revisions';
import { ShareLinks } from './share-links';
import { downloadImage } from './download';

/** Glance's own fields; every other key of the view is an extra property (pir_* are PIR's read-only ones). */
const BASE = new Set(['id', 'name', 'status', 'visibility', 'protected', 'os_hidden', 'owner', 'container_format', 'disk_format', 'min_disk', 'min_ram',
  'size', 'virtual_size', 'checksum', 'os_hash_algo', 'os_hash_value', 'tags', 'created_at', 'updated_at', 'self', 'file', 'schema', 'locations', 'direct_url']);
const isProperty = (key: string) => !BASE.has(key) && !key.startsWith('pir_');

const rolesOf = (caller: Hello) => caller.roles.map((r) => r.toLowerCase());

/** Revisions are the owner project's and administrators' only (README): anyone else would get 403. */
export function maySeeRevisions(caller: Hello | null, image: Image): boolean {
  if (!caller) return false;
  return rolesOf(caller).includes('admin') || (image.owner !== null && image.owner === caller.project_id);
}

export function mayEdit(caller: Hello | null, image: Image): boolean {
  if (!caller) return false;
  const roles = rolesOf(caller);
  if (roles.includes('admin')) return true;
  return roles.includes('member') && image.owner === caller.project_id;
}

/** Creating an image (so uploading) needs member or admin (PIR's add_image): a reader-only token only looks. */
export function mayCreate(caller: Hello): boolean {
  const roles = rolesOf(caller);
  return roles.includes('admin') || roles.includes('member');
}

export function ImagePage({ id, features, caller, live }: { id: string; features: Features; caller: Hello | null; live: LiveBus }) {
  const [image, setImage] = useState<Image | null>(null);
  const [error, setError] = useState('');
  const [note, setNote] = useState('');
  const reload = () => getJson<Image>(`/v2/images/${encodeURIComponent(id)}`).then(setImage, (e: Error) => setError(e instanceof ApiError && e.status === 404 ? 'No such image (or you may not see it).' : e.message));
  // App keys this page by id, so another image starts from a fresh state (never shows the last one's).
  useEffect(() => { void reload(); }, [id]);
  useEffect(() => live.on((type, updated) => {
    if (updated.id !== id) return;
    if (type === 'image.deleted') setError('This image was deleted.');
    else setImage(updated);
  }), [id]);

  // Keyboard and screen-reader users land on the image's heading, not wherever the list left focus.
  const heading = useRef<HTMLHeadingElement>(null);
  const loaded = image !== null;
  useEffect(() => { if (loaded) heading.current?.focus(); }, [loaded]);

  if (error) return <section class="page"><p class="problem" role="alert" id="image-error">{error}</p><a href="#/">Back to the list</a></section>;
  if (!image) return <p class="muted">Loading…</p>;
  const editable = mayEdit(caller, image);
  const act = async (fn: () => Promise<unknown>, done: string) => {
    setNote('');
    try { await fn(); await reload(); setNote(done); } catch (e) { setNote(`Not done: ${(e as Error).message}`); }
  };
  const props = Object.entries(image).filter(([k]) => isProperty(k));

  return (
    <article class="page" aria-labelledby="image-title" data-image={image.id}>
      <p><a href="#/">← Images</a></p>
      <h1 id="image-title" tabIndex={-1} ref={heading}>{image.name ? <bdi>{visible(image.name)}</bdi> : '(no name)'} <span class={`badge s-${image.status}`} id="image-status">{image.status}</span></h1>
      {note && <p class="note" role="status" id="image-note">{note}</p>}
      <Timeline image={image} />
      <section aria-labelledby="h-meta"><h2 id="h-meta">Metadata</h2>
        <dl class="meta" id="metadata">
          {[...BASE].filter((k) => k in image && k !== 'tags').map((k) => (
            <><dt>{k}</dt><dd class={k.includes('hash') || k === 'checksum' || k === 'id' || k === 'owner' ? 'mono' : ''} data-field={k}><bdi>{fmt(k, image[k])}</bdi></dd></>
          ))}
        </dl>
      </section>
      <section aria-labelledby="h-sums"><h2 id="h-sums">Checksums</h2>
        <dl class="meta" id="checksums">
          <dt>md5 (checksum)</dt><dd class="mono">{image.checksum ?? '—'}</dd>
          <dt>{image.os_hash_algo ?? 'sha512'} (os_hash_value)</dt><dd class="mono">{image.os_hash_value ?? '—'}</dd>
        </dl>
        {image.status === 'active' && <button type="button" id="download" onClick={() => act(() => downloadImage(image), 'Downloaded.')}>Download</button>}
      </section>
      <Properties image={image} props={props} editable={editable} act={act} />
      <Tags image={image} editable={editable} act={act} />
      <Members image={image} editable={editable} caller={caller} act={act} />
      {maySeeRevisions(caller, image) && <Revisions image={image} features={features} editable={editable} act={act} />}
      {features.shareLinks && <ShareLinks image={image} editable={editable} />}
    </article>
  );
}

function fmt(key: string, value: unknown): string {
  if (value === null || value === undefined) return '—';
  if (key === 'size' || key === 'virtual_size') return `${bytes(value as number)} (${String(value)} bytes)`;
  if (key.endsWith('_at')) return when(value as string);
  return visible(typeof value === 'object' ? JSON.stringify(value) : String(value));
}

type Act = (fn: () => Promise<unknown>, done: string) => Promise<void>;

function Properties({ image, props, editable, act }: { image: Image; props: [string, unknown][]; editable: boolean; act: Act }) {
  const save = (key: string) => (e: Event) => {
    e.preventDefault();
    const value = String(new FormData(e.currentTarget as HTMLFormElement).get('value') ?? '');
    void act(() => patchImage(image.id, [{ op: 'replace', path: `/${key}`, value }]), `Saved ${visible(key)}.`);
  };
  const add = (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    const key = String(form.get('key') ?? '').trim();
    if (!key) return;
    void act(() => patchImage(image.id, [{ op: 'add', path: `/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`, value: String(form.get('value') ?? '') }]), `Added ${visible(key)}.`);
    (e.currentTarget as HTMLFormElement).reset();
  };
  return (
    <section aria-labelledby="h-props"><h2 id="h-props">Properties</h2>
      {props.length === 0 && <p class="muted">No extra properties.</p>}
      <ul class="props" id="properties">
        {props.map(([key, value]) => (
          <li data-prop={key} key={key}>
            {editable ? (
              <form onSubmit={save(key.replace(/~/g, '~0').replace(/\//g, '~1'))} class="prop-edit">
                {/* The field holds the raw value (saving must write it back unchanged); dir=auto keeps its controls from reordering the page around it.
                    Uncontrolled, so that a re-render from a live event does not put back the stored value over what is being typed;
                    keyed by the value, so that a change made elsewhere does show. */}
                <label><bdi class="mono">{visible(key)}</bdi> <input name="value" dir="auto" key={String(value)} defaultValue={String(value)} aria-label={`value of ${visible(key)}`} /></label>
                <button type="submit">Save</button>
                <button type="button" class="danger" onClick={() => act(() => patchImage(image.id, [{ op: 'remove', path: `/${key.replace(/~/g, '~0').replace(/\//g, '~1')}` }]), `Removed ${visible(key)}.`)}>Remove</button>
              </form>
            ) : <><bdi class="mono">{visible(key)}</bdi> = <bdi class="mono">{visible(value)}</bdi></>}
          </li>
        ))}
      </ul>
      {editable && (
        <form class="prop-add" id="property-add" onSubmit={add}>
          <label>Name <input name="key" required maxLength={255} /></label>
          <label>Value <input name="value" maxLength={65535} /></label>
          <button type="submit">Add property</button>
        </form>
      )}
    </section>
  );
}

function Tags({ image, editable, act }: { image: Image; editable: boolean; act: Act }) {
  const path = (tag: string) => `/v2/images/${encodeURIComponent(image.id)}/tags/${encodeURIComponent(tag)}`;
  return (
    <section aria-labelledby="h-tags"><h2 id="h-tags">Tags</h2>
      <ul class="tags" id="tags">
        {image.tags.map((t) => <li key={t}><bdi class="tag">{visible(t)}</bdi>{editable && <button type="button" class="link" aria-label={`remove tag ${visible(t)}`} onClick={() => act(() => api(path(t), { method: 'DELETE' }), `Removed tag ${visible(t)}.`)}>×</button>}</li>)}
        {image.tags.length === 0 && <li class="muted">No tags.</li>}
      </ul>
      {editable && (
        <form class="inline" onSubmit={(e) => { e.preventDefault(); const f = e.currentTarget as HTMLFormElement; const tag = String(new FormData(f).get('tag') ?? '').trim(); if (tag) void act(() => api(path(tag), { method: 'PUT' }), `Tagged ${visible(tag)}.`); f.reset(); }}>
          <label>New tag <input name="tag" maxLength={255} /></label> <button type="submit">Add tag</button>
        </form>
      )}
    </section>
  );
}

function Members({ image, editable, caller, act }: { image: Image; editable: boolean; caller: Hello | null; act: Act }) {
  const [members, setMembers] = useState<Member[] | null>(null);
  const [why, setWhy] = useState('');
  const base = `/v2/images/${encodeURIComponent(image.id)}/members`;
  // Only shared images have members: for any other visibility PIR answers 403 members_only_shared, so the page does not ask.
  const shared = image.visibility === 'shared';
  useEffect(() => {
    if (!shared) { setMembers(null); setWhy(''); return; }
    getJson<{ members: Member[] }>(base).then((r) => { setMembers(r.members); setWhy(''); }, (e: Error) => {
      setMembers(null);
      // A 403 (the visibility or the caller's roles changed meanwhile) is not an error to show: the list is just not the caller's to see.
      setWhy(e instanceof ApiError && e.status === 403 ? '' : e.message);
    });
  }, [image.id, image.updated_at, shared]);
  if (!shared) return null;
  const mine = members?.find((m) => m.member_id === caller?.project_id);
  return (
    <section aria-labelledby="h-members"><h2 id="h-members">Members</h2>
      {why && <p class="muted">{why}</p>}
      <ul id="members">
        {(members ?? []).map((m) => (
          <li key={m.member_id}><bdi class="mono">{visible(m.member_id)}</bdi> <span class={`badge m-${m.status}`}>{m.status}</span>
            {editable && <button type="button" class="link" onClick={() => act(() => api(`${base}/${encodeURIComponent(m.member_id)}`, { method: 'DELETE' }), `Removed ${visible(m.member_id)}.`)}>remove</button>}</li>
        ))}
        {members && members.length === 0 && <li class="muted">Not shared with any project yet.</li>}
      </ul>
      {mine && ['accepted', 'rejected'].filter((s) => s !== mine.status).map((s) => (
        <button type="button" onClick={() => act(() => sendJson('PUT', `${base}/${encodeURIComponent(mine.member_id)}`, { status: s }), `Membership ${s}.`)}>{s === 'accepted' ? 'Accept' : 'Reject'}</button>
      ))}
      {editable && (
        <form class="inline" onSubmit={(e) => { e.preventDefault(); const f = e.currentTarget as HTMLFormElement; const member = String(new FormData(f).get('member') ?? '').trim(); if (member) void act(() => sendJson('POST', base, { member }), `Shared with ${visible(member)}.`); f.reset(); }}>
          <label>Share with project <input name="member" maxLength={255} /></label> <button type="submit">Add member</button>
        </form>
      )}
    </section>
  );
}

export { isNoRoute };
