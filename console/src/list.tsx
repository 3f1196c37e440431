/**
 * The images list: the API's filters and sort (sort=key:dir), keyword search (?q=) and the gallery
 * tree when this PIR has them, paging by Glance's `next` links. It is a table to assistive
 * technology (so the sorted column says so with aria-sort); each row's name is a link that covers
 * the whole row (keyboard: Tab, Enter, and the arrow keys between rows); long lists stay smooth because only the rows near
 * the screen are in the page (a window over the loaded rows, with spacers for the rest).
 */
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { getJson, type Image } from './api';
import { bytes, visible, when } from './format';
import type { Features } from './features';
import type { LiveBus } from './live-bus';
import { GalleryTree } from './galleries';

const COLUMNS: [key: string, label: string][] = [
  ['name', 'Name'], ['status', 'Status'], ['disk_format', 'Format'], ['size', 'Size'], ['virtual_size', 'Virtual size'],
  ['visibility', 'Visibility'], ['owner', 'Owner'], ['updated_at', 'Updated'],
];
const PAGE = 200;
/** Every row is this tall (style.css: .row.item), so the window is plain arithmetic. */
const ROW_PX = 40;
/** Rows kept in the page above and below the screen. */
const OVERSCAN = 15;

/** Which rows [first, last) are near the screen, for a list whose top is at `top` (viewport px). */
function windowOf(top: number, total: number): [number, number] {
  const first = Math.max(0, Math.floor(-top / ROW_PX) - OVERSCAN);
  return [first, Math.min(total, first + Math.ceil(innerHeight / ROW_PX) + 2 * OVERSCAN)];
}

interface Filters { q: string; status: string; visibility: string; disk_format: string; tag: string; gallery: string }
const NO_FILTERS: Filters = { q: '', status: '', visibility: '', disk_format: '', tag: '', gallery: '' };

function listUrl(f: Filters, sort: string, features: Features): string {
  const p = new URLSearchParams({ limit: String(PAGE), sort });
  if (f.q && features.search) { p.set('q', f.q); p.set('sort', 'relevance'); }
  if (f.status) p.set('status', f.status);
  if (f.visibility) p.set('visibility', f.visibility);
  if (f.disk_format) p.set('disk_format', f.disk_format);
  if (f.tag) p.set('tag', f.tag);
  if (f.gallery) { p.set('gallery', f.gallery); p.set('recursive', 'true'); }
  return `/v2/images?${p}`;
}

export function ImageList({ features, live }: { features: Features; live: LiveBus }) {
  const [filters, setFilters] = useState<Filters>(NO_FILTERS);
  const [sort, setSort] = useState('updated_at:desc');
  const [images, setImages] = useState<Image[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState('');

  // Only the newest request's answer is shown: a page still loading when the filters change
  // (a scroll's "load more", the first list) must not land on top of the search's result.
  const newest = useRef(0);
  const load = async (url: string, append: boolean) => {
    const request = ++newest.current;
    setLoading(true); setError('');
    try {
      const page = await getJson<{ images: Image[]; next?: string }>(url);
      if (request !== newest.current) return;
      setImages((old) => append ? [...old, ...page.images] : page.images);
      setNext(page.next ?? null);
    } catch (e) {
      if (request === newest.current) setError((e as Error).message);
    } finally {
      if (request === newest.current) setLoading(false);
    }
  };
  useEffect(() => { void load(listUrl(filters, sort, features), false); }, [filters, sort]);

  // Live: an image shown is updated in place; a new one of ours appears on top; a deleted one goes.
  useEffect(() => live.on((type, image) => {
    setImages((old) => {
      if (type === 'image.deleted') return old.filter((i) => i.id !== image.id);
      const at = old.findIndex((i) => i.id === image.id);
      if (at >= 0) { const copy = [...old]; copy[at] = image; return copy; }
      return type === 'image.created' && !filters.q ? [image, ...old] : old;
    });
  }), [filters]);

  const sortBy = (key: string) => {
    const [k, d] = sort.split(':');
    setSort(`${key}:${k === key && d === 'asc' ? 'desc' : 'asc'}`);
  };
  const submit = (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    setFilters({ ...NO_FILTERS, gallery: filters.gallery, ...Object.fromEntries([...form.entries()].map(([k, v]) => [k, String(v).trim()])) });
  };
  const [sortKey, sortDir] = sort.split(':');

  // The window over the rows follows the page's scroll (one computation per frame at most).
  const rowsRef = useRef<HTMLDivElement>(null);
  const [range, setRange] = useState<[number, number]>([0, 60]);
  const focusNext = useRef<number | null>(null);
  useLayoutEffect(() => {
    let queued = false;
    const update = () => {
      queued = false;
      const el = rowsRef.current;
      if (!el) return;
      const [a, b] = windowOf(el.getBoundingClientRect().top, images.length);
      setRange((old) => (old[0] === a && old[1] === b ? old : [a, b]));
    };
    const onScroll = () => { if (!queued) { queued = true; requestAnimationFrame(update); } };
    update();
    addEventListener('scroll', onScroll, { passive: true });
    addEventListener('resize', onScroll);
    return () => { removeEventListener('scroll', onScroll); removeEventListener('resize', onScroll); };
  }, [images.length]);
  useEffect(() => {
    if (focusNext.current === null) return;
    const el = rowsRef.current?.querySelector<HTMLElement>(`[data-index="${focusNext.current}"]`);
    if (el) { el.focus(); focusNext.current = null; }
  });
  const onRowKey = (e: KeyboardEvent) => {
    const at = Number((e.target as HTMLElement).dataset.index);
    if (Number.isNaN(at) || (e.key !== 'ArrowDown' && e.key !== 'ArrowUp')) return;
    e.preventDefault();
    const to = Math.max(0, Math.min(images.length - 1, at + (e.key === 'ArrowDown' ? 1 : -1)));
    const el = rowsRef.current?.querySelector<HTMLElement>(`[data-index="${to}"]`);
    if (el) { el.focus(); el.scrollIntoView({ block: 'nearest' }); } else focusNext.current = to;
  };

  return (
    <section class={`images ${features.galleries ? 'with-tree' : ''}`} aria-label="Images">
      {features.galleries && <GalleryTree selected={filters.gallery} onSelect={(gallery) => setFilters({ ...filters, gallery })} />}
      <div class="list-main">
        {/* Uncontrolled fields (read on submit): the list re-renders on every scroll step and live
            event, and a controlled value would put the last applied filter back over what is typed. */}
        <form class="filters" id="filters" onSubmit={submit} role="search">
          {features.search && <label class="grow">Search <input name="q" id="search" type="search" placeholder="name, tags, properties…" /></label>}
          <label>Status <select name="status">
            {['', 'queued', 'saving', 'importing', 'active', 'killed', 'deactivated'].map((s) => <option value={s}>{s || 'any'}</option>)}
          </select></label>
          <label>Visibility <select name="visibility">
            {['', 'private', 'shared', 'community', 'public', 'all'].map((s) => <option value={s}>{s || 'default'}</option>)}
          </select></label>
          <label>Format <input name="disk_format" size={7} /></label>
          <label>Tag <input name="tag" size={10} /></label>
          <button type="submit">Apply</button>
        </form>
        {error && <p class="problem" role="alert">{error}</p>}
        <div class="grid" role="table" aria-label="Images" id="images-list">
          <div class="row head" role="row">
            {COLUMNS.map(([key, label]) => (
              <span class={`c-${key}`} role="columnheader" aria-sort={sortKey === key ? (sortDir === 'asc' ? 'ascending' : 'descending') : undefined}>
                <button type="button" class="sort" data-sort={key} onClick={() => sortBy(key)}>{label}{sortKey === key ? (sortDir === 'asc' ? ' ▲' : ' ▼') : ''}</button>
              </span>
            ))}
          </div>
          <div class="rows" role="rowgroup" ref={rowsRef} onKeyDown={onRowKey} style={{ paddingTop: `${range[0] * ROW_PX}px`, paddingBottom: `${Math.max(0, images.length - range[1]) * ROW_PX}px` }}>
          {images.slice(range[0], range[1]).map((image, k) => (
            <div class="row item" role="row" data-id={image.id} data-status={image.status} key={image.id}>
              <span class="c-name" role="cell">
                <a class="row-link" href={`#/images/${encodeURIComponent(image.id)}`} data-index={range[0] + k}>{image.name ? <bdi>{visible(image.name)}</bdi> : <em>(no name)</em>}</a>
              </span>
              <span class="c-status" role="cell"><span class={`badge s-${image.status}`}>{image.status}</span></span>
              <span class="c-disk_format" role="cell">{image.disk_format ? visible(image.disk_format) : '—'}</span>
              <span class="c-size num" role="cell">{bytes(image.size)}</span>
              <span class="c-virtual_size num" role="cell">{bytes(image.virtual_size)}</span>
              <span class="c-visibility" role="cell">{image.visibility}</span>
              <span class="c-owner mono" role="cell">{image.owner ? visible(image.owner) : '—'}</span>
              <span class="c-updated_at" role="cell">{when(image.updated_at)}</span>
            </div>
          ))}
          </div>
        </div>
        <p class="list-foot">
          <span id="images-count">{images.length} image{images.length === 1 ? '' : 's'} shown</span>
          {loading && <span class="muted"> · loading…</span>}
          {next && !loading && <button type="button" id="more" onClick={() => load(next, true)}>Load more</button>}
        </p>
      </div>
    </section>
  );
}
