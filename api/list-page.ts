/**
 * Builds one page of a listing without holding more than the page's byte budget: images are
 * fetched in small batches and serialized one by one; the page ends early, with a `next` link,
 * once its JSON would pass the budget (it always holds at least one image).
 */
import type { ImageDoc } from '../schemas/image.js';

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
 * Serializes the images of `batches` (the page's images in order, a batch at a time, as
 * ImageService.listBatches yields them) until `limit` images or the byte budget; stops reading
 * the batches there.
 */
export async function collectPage(
  batches: AsyncIterable<ImageDoc[]>,
  limit: number,
  serialize: (doc: ImageDoc) => string,
  limits = PAGE_LIMITS,
): Promise<Page> {
  const page: Page = { items: [], count: 0, bytes: 0, lastId: null, cut: false };
  for await (const docs of batches) {
    for (const doc of docs) {
      if (page.count >= limit) return page;
      const json = serialize(doc);
      if (page.count > 0 && page.bytes + json.length > limits.budgetBytes) {
        page.cut = true;
        return page;
      }
      page.items.push(json);
      page.count += 1;
      page.bytes += json.length;
      page.lastId = doc.id;
    }
  }
  return page;
}
