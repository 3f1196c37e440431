/**
 * Builds one page of a listing without holding more than the page's byte budget: images are
 * fetched in small batches and serialized one by one; the page ends early, with a `next` link,
 * once its JSON would pass the budget (it always holds at least one image).
 */
import type { ImageDoc } from '../schemas/image.js';
import type { SortValue } from '../core/ports.js';

export const PAGE_LIMITS = {
  /** JSON characters of the images of one page (a page holds at least one image, whatever its size). */
  budgetBytes: 4 * 1024 * 1024,
  /** Documents read from the store at a time. */
  batch: 50,
};

export interface Page {
  /** Each image's JSON. */
  items: string[];
  count: number;
  bytes: number;
  /** The last image's id (the next page's marker), or null for an empty page. */
  lastId: string | null;
  /** The page was ended by the byte budget, not by the limit or the end of the list. */
  cut: boolean;
}

/**
 * `fetch(batch, after)` reads the next `batch` images: after the page's marker when `after` is
 * undefined, else after the image whose sort keyset (cursorOf) that is.
 */
export async function collectPage(
  fetch: (batch: number, after: SortValue[] | undefined) => Promise<ImageDoc[]>,
  limit: number,
  serialize: (doc: ImageDoc) => string,
  cursorOf: (doc: ImageDoc) => SortValue[],
  limits = PAGE_LIMITS,
): Promise<Page> {
  const page: Page = { items: [], count: 0, bytes: 0, lastId: null, cut: false };
  let after: SortValue[] | undefined;
  while (page.count < limit) {
    const want = Math.min(limits.batch, limit - page.count);
    const docs = await fetch(want, after);
    for (const doc of docs) {
      const json = serialize(doc);
      if (page.count > 0 && page.bytes + json.length > limits.budgetBytes) {
        page.cut = true;
        return page;
      }
      page.items.push(json);
      page.count += 1;
      page.bytes += json.length;
      page.lastId = doc.id;
      after = cursorOf(doc);
    }
    if (docs.length < want) break;
  }
  return page;
}
