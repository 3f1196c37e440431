/**
 * Download with the token in a header (a plain link cannot carry it): the response is streamed to
 * a file the user picks where the browser offers that (Chromium's showSaveFilePicker), so a large
 * image never sits in memory; elsewhere it goes through a Blob.
 */
import { api, type Image } from './api';

type SavePicker = (o: { suggestedName: string }) => Promise<{ createWritable(): Promise<WritableStream<Uint8Array>> }>;

export async function downloadImage(image: Image): Promise<void> {
  const name = `${image.name || image.id}${image.disk_format && !(image.name ?? '').endsWith(`.${image.disk_format}`) ? `.${image.disk_format}` : ''}`;
  const picker = (window as unknown as { showSaveFilePicker?: SavePicker }).showSaveFilePicker;
  if (picker) {
    const handle = await picker({ suggestedName: name });
    const response = await api(`/v2/images/${encodeURIComponent(image.id)}/file`);
    await response.body!.pipeTo(await handle.createWritable());
    return;
  }
  const response = await api(`/v2/images/${encodeURIComponent(image.id)}/file`);
  const url = URL.createObjectURL(await response.blob());
  const a = Object.assign(document.createElement('a'), { href: url, download: name });
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
