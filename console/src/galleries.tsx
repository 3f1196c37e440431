/** The gallery tree (issue 11's /v2/galleries: {id, name, parent_id, path}), shown only when PIR declares galleries. */
import { useEffect, useState } from 'preact/hooks';
import { getJson } from './api';
import { visible } from './format';

interface Gallery { id: string; name: string; parent_id: string | null; path: string }

export function GalleryTree({ selected, onSelect }: { selected: string; onSelect: (id: string) => void }) {
  const [galleries, setGalleries] = useState<Gallery[]>([]);
  const [error, setError] = useState('');
  useEffect(() => {
    getJson<{ galleries: Gallery[] }>('/v2/galleries').then((r) => setGalleries(r.galleries ?? []), (e: Error) => setError(e.message));
  }, []);
  const children = (parent: string | null): Gallery[] => galleries.filter((g) => (g.parent_id ?? null) === parent).sort((a, b) => a.name.localeCompare(b.name));
  const branch = (parent: string | null) => {
    const kids = children(parent);
    if (!kids.length) return null;
    return (
      <ul role={parent ? 'group' : 'tree'}>
        {kids.map((g) => (
          <li role="treeitem" aria-selected={selected === g.id} key={g.id}>
            <button type="button" class={selected === g.id ? 'current' : ''} data-gallery={g.id} data-path={g.path} onClick={() => onSelect(g.id)}><bdi>{visible(g.name)}</bdi></button>
            {branch(g.id)}
          </li>
        ))}
      </ul>
    );
  };
  return (
    <nav class="tree" aria-label="Galleries" id="gallery-tree">
      <button type="button" class={selected ? '' : 'current'} onClick={() => onSelect('')}>All images</button>
      {error ? <p class="problem">{error}</p> : branch(null)}
    </nav>
  );
}
