/**
 * Keyword search (GET /v2/images?q=…): one tokenizer for the words an image is found by and
 * for the words of a query, so every store matches the same way.
 *
 * An image's words are the lowercased letter-and-digit runs of its name, its tags and the
 * values of its extra properties (a Glance `description` is one of them). Property keys are
 * left out: `os` would otherwise match every image with an `os_distro`. A query's words are
 * ANDed; every word but the last must be a whole word of the image, the last may be the start
 * of one (so `deb` finds `debian` while typing). Stores keep the words as a derived, indexed
 * field (SQLite: the image_words side table; MongoDB: the pir_words array): no `$text`, which
 * FerretDB v1 lacks.
 */
import type { ImageDoc } from '../schemas/image.js';
import { fail } from './error-catalog.js';

/** A parsed `q`: exact words, and the last word as a prefix. */
export interface Search {
  words: string[];
  prefix: string;
}

/** Longest word kept (longer runs are cut: a 64 KiB property value is not one word). */
export const MAX_WORD = 64;
/** Most words a query may hold. */
export const MAX_QUERY_WORDS = 16;
const MAX_QUERY_CHARS = 1024;

/**
 * Which tokenizer the stores' indexed words were made with: a store whose words were indexed by
 * an older one rebuilds them on start (SQLite: schema version 5; MongoDB: `pir_words_v`).
 * 2: text in Unicode NFC (`café` typed as `e` + U+0301 is the word `café`, not `cafe`).
 */
export const WORDS_VERSION = 2;

/**
 * Lowercased letter-and-digit runs, in Unicode NFC, each cut to MAX_WORD characters: the same
 * text typed composed (NFC) or decomposed (NFD) gives the same words, for the words indexed and
 * the words of a query alike.
 */
export function wordsOf(text: string): string[] {
  const out: string[] = [];
  for (const m of text.normalize('NFC').toLowerCase().normalize('NFC').matchAll(/[\p{L}\p{N}]+/gu)) out.push(m[0].slice(0, MAX_WORD));
  return out;
}

/** Where a word was found: the name weighs most, then tags, then property values (sort=relevance). */
export const WEIGHTS = { name: 4, tag: 2, property: 1 } as const;

/** The property values searched: the user's, not PIR's own (pir_gallery_id holds an id, no word). */
function searchedValues(doc: Pick<ImageDoc, 'properties'>): string[] {
  return Object.entries(doc.properties).filter(([k]) => !k.startsWith('pir_')).map(([, v]) => v);
}

/**
 * The distinct words an image is found by, each with the weight of the best place it is found
 * in (WEIGHTS): a store keeping the weight beside the word ranks in its own query language.
 */
export function weightedWords(doc: Pick<ImageDoc, 'name' | 'tags' | 'properties'>): Map<string, number> {
  const words = new Map<string, number>();
  const add = (text: string, weight: number) => {
    for (const w of wordsOf(text)) if ((words.get(w) ?? 0) < weight) words.set(w, weight);
  };
  add(doc.name ?? '', WEIGHTS.name);
  for (const tag of doc.tags) add(tag, WEIGHTS.tag);
  for (const value of searchedValues(doc)) add(value, WEIGHTS.property);
  return words;
}

/** The distinct words an image is found by. */
export function imageWords(doc: Pick<ImageDoc, 'name' | 'tags' | 'properties'>): string[] {
  return [...weightedWords(doc).keys()];
}

/** `q` → the search it asks for; 400 when it holds no word or too many. */
export function parseSearch(q: string): Search {
  if (q.length > MAX_QUERY_CHARS) throw fail('bad_search', `Query parameter 'q' is at most ${MAX_QUERY_CHARS} characters.`);
  const words = [...new Set(wordsOf(q))];
  if (words.length === 0) throw fail('bad_search', "Query parameter 'q' holds no word: give letters or digits, e.g. q=debian 12.");
  if (words.length > MAX_QUERY_WORDS) throw fail('bad_search', `Query parameter 'q' holds ${words.length} words; give at most ${MAX_QUERY_WORDS}.`);
  const prefix = words.pop()!;
  return { words, prefix };
}

function matchesTerm(words: Iterable<string>, term: string, prefix: boolean): boolean {
  for (const w of words) if (prefix ? w.startsWith(term) : w === term) return true;
  return false;
}

/** Whether the image matches (the reference every store's query must agree with). */
export function searchMatches(doc: Pick<ImageDoc, 'name' | 'tags' | 'properties'>, search: Search): boolean {
  const words = imageWords(doc);
  return search.words.every((w) => words.includes(w)) && matchesTerm(words, search.prefix, true);
}

/**
 * How well the image matches: for each query word, the weight of the best place it was found
 * (name > tags > properties), summed. Equal scores keep the list's usual order.
 */
export function relevance(doc: Pick<ImageDoc, 'name' | 'tags' | 'properties'>, search: Search): number {
  const places: [number, string[]][] = [
    [WEIGHTS.name, wordsOf(doc.name ?? '')],
    [WEIGHTS.tag, doc.tags.flatMap(wordsOf)],
    [WEIGHTS.property, searchedValues(doc).flatMap(wordsOf)],
  ];
  const terms: [string, boolean][] = [...search.words.map((w): [string, boolean] => [w, false]), [search.prefix, true]];
  let score = 0;
  for (const [term, prefix] of terms) {
    for (const [weight, words] of places) {
      if (matchesTerm(words, term, prefix)) {
        score += weight;
        break;
      }
    }
  }
  return score;
}

/**
 * The scores an image matching every term can have, best first, given the weights each term is
 * found with somewhere in the store (one list per term: the words, then the prefix). A store
 * ranks tier by tier (sort=relevance): all images of the best score in the list's order, then
 * the next score's, so a page is read from its score's tier alone, never by scoring every match.
 */
export function possibleScores(weightsPerTerm: number[][]): number[] {
  let sums = new Set([0]);
  for (const weights of weightsPerTerm) {
    const next = new Set<number>();
    for (const s of sums) for (const w of weights) next.add(s + w);
    sums = next;
  }
  return [...sums].filter((s) => s > 0).sort((a, b) => b - a);
}

/**
 * Longest word start kept as its own token (wordStarts): a store that answers equality from an
 * index but not ranges (FerretDB v1) matches a query's last word by equality on these; a longer
 * last word is matched on its first PREFIX_TOKEN_MAX characters, then checked whole.
 */
export const PREFIX_TOKEN_MAX = 12;

/** Every start of every word, 1 to PREFIX_TOKEN_MAX characters long (the word itself included when it is that short). */
export function wordStarts(words: Iterable<string>): string[] {
  const starts = new Set<string>();
  for (const w of words) {
    const chars = [...w]; // whole code points: a start never splits a surrogate pair
    for (let n = 1; n <= Math.min(chars.length, PREFIX_TOKEN_MAX); n++) starts.add(chars.slice(0, n).join(''));
  }
  return [...starts];
}

/** The exclusive upper bound of the words starting with `prefix` (for index range scans). */
export function prefixEnd(prefix: string): string {
  return prefix + '\u{10FFFF}';
}
