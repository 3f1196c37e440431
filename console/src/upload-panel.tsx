/** Drop zone / file picker and the upload queue with progress, rate and ETA. */
import { useEffect, useState } from 'preact/hooks';
import { bytes, eta, visible } from './format';
import type { Features } from './features';
import { forgetPending, pendingUploads, type UploadQueue } from './upload';

export function UploadPanel({ queue, features }: { queue: UploadQueue; features: Features }) {
  const [items, setItems] = useState(queue.items);
  const [over, setOver] = useState(false);
  const [pending, setPending] = useState(pendingUploads);
  useEffect(() => queue.subscribe(() => { setItems(queue.items); setPending(pendingUploads()); }), [queue]);

  const open = pending.filter((p) => !items.some((i) => i.imageId === p.imageId));
  const onDrop = (e: DragEvent) => {
    e.preventDefault(); setOver(false);
    if (e.dataTransfer?.files.length) queue.add(e.dataTransfer.files);
  };
  return (
    <section class="upload" aria-label="Upload">
      <div class={`drop ${over ? 'over' : ''}`} id="drop" onDragOver={(e) => { e.preventDefault(); setOver(true); }} onDragLeave={() => setOver(false)} onDrop={onDrop}>
        <label class="picker">
          <span>Drop disk images here, or <u>choose files</u></span>
          <input id="file-input" type="file" multiple onChange={(e) => { const input = e.currentTarget; if (input.files?.length) queue.add(input.files); input.value = ''; }} />
        </label>
        <span class="muted">{features.tus ? 'Resumable uploads (tus): an interrupted upload continues where it stopped.' : 'Uploads go in one request (this PIR has no resumable uploads).'}</span>
      </div>
      {open.length > 0 && (
        <div class="pending" id="pending-uploads" role="status">
          {open.map((p) => (
            <p key={p.imageId}>Interrupted: <strong><bdi>{visible(p.name)}</bdi></strong> ({bytes(p.size)}) — choose the same file again to {p.uploadUrl ? 'resume it' : 'upload it again'} into image <a href={`#/images/${p.imageId}`} class="mono">{p.imageId.slice(0, 8)}</a>.
              <button type="button" class="link" onClick={() => { forgetPending(p.imageId); setPending(pendingUploads()); }}>Forget</button></p>
          ))}
        </div>
      )}
      {items.length > 0 && (
        <ol class="queue" id="upload-queue">
          {items.map((item) => {
            const pct = item.total ? Math.floor((item.sent / item.total) * 100) : 0;
            return (
              <li class="upload-item" data-phase={item.phase} data-image={item.imageId ?? ''} key={item.key}>
                <span class="u-name"><bdi>{item.imageId ? <a href={`#/images/${item.imageId}`}>{visible(item.name)}</a> : visible(item.name)}</bdi></span>
                <progress max={100} value={pct} aria-label={`${visible(item.name)} upload progress`} />
                <span class="u-stats">{item.phase === 'uploading'
                  ? `${pct}% · ${bytes(item.sent)} of ${bytes(item.total)} · ${bytes(item.rate)}/s · ETA ${eta(item.etaSeconds)}`
                  : `${pct}% of ${bytes(item.total)}`}</span>
                <span class={`u-phase p-${item.phase}`}>{phaseWords(item.phase)}{item.error ? `: ${visible(item.error)}` : ''}</span>
              </li>
            );
          })}
        </ol>
      )}
    </section>
  );
}

function phaseWords(phase: string): string {
  return ({ waiting: 'waiting', creating: 'creating the image', uploading: 'uploading', processing: 'checking (pipeline running)', done: 'active', failed: 'failed' } as Record<string, string>)[phase] ?? phase;
}
