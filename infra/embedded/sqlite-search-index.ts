/**
 * The SQLite store's keyword index, beside the images table and written in the same
 * transaction (core/search.ts decides the words):
 *
 * - `image_words (image_id, word, weight)`: one row per distinct word of an image with the
 *   weight of the best place it is found in; probed per image while the list walks its index
 *   newest first (a common word), and read to rank (sort=relevance) in SQL;
 * - `image_search`: an FTS5 table over the same words (contentless, `ascii` tokenizer over words
 *   already lowercased and split by core/search.ts, so SQLite cannot split them differently),
 *   keyed by `image_docids`' stable integer. It answers what the side table cannot do cheaply:
 *   the intersection of several common words (`debian noble`: 16,700 and 5,500 rows, 0 in
 *   common), by merging its posting lists instead of probing image after image.
 *
 * sort=relevance is ranked tier by tier (core/search.ts possibleScores): which scores can occur
 * at all is read from `image_words_word_weight` (word, weight) in a few index seeks, and each
 * tier is a list query with "score = s" (`scoreSql`), so a page reads its own tier only.
 *
 * A last word (a prefix) joins the FTS5 query when it is short (its prefix index answers it) or
 * has few completions; a prefix like `buil` with 100,000 completions (`build1`…) would make FTS5
 * merge 100,000 posting lists, so it is left to the side table's range probe instead.
 */
import type Database from 'better-sqlite3';
import { possibleScores, prefixEnd, weightedWords, type Search } from '../../core/search.js';
import type { ImageDoc } from '../../schemas/image.js';

export const SEARCH_SCHEMA = `
CREATE TABLE IF NOT EXISTS image_docids (
  docid    INTEGER PRIMARY KEY,
  image_id TEXT NOT NULL UNIQUE
);
CREATE VIRTUAL TABLE IF NOT EXISTS image_search USING fts5(words, tokenize = 'ascii', prefix = '1 2 3', detail = none, content = '', contentless_delete = 1);
DROP INDEX IF EXISTS image_words_word;
CREATE INDEX IF NOT EXISTS image_words_word_weight ON image_words (word, weight, image_id);
`;

/** The weights each term of a search is found with, and the prefix's completions (null: too many to list). */
export interface TermWeights {
  perTerm: number[][];
  completions: string[] | null;
}

/** The weights a word can be found with (core/search.ts WEIGHTS), best first. */
const ALL_WEIGHTS = [4, 2, 1];

/** A tier reached in more ways than this (one weight per term) is walked without an index check. */
const MAX_TIER_COMBINATIONS = 16;
/** Prefixes up to this long are served by the FTS5 prefix index (prefix = '1 2 3'). */
const INDEXED_PREFIX = 3;
/** A longer prefix joins the FTS5 query when it has at most this many distinct completions. */
const MAX_COMPLETIONS = 64;

/** `"word"` as an FTS5 string (words are letter-and-digit runs: no quote to escape, but escape anyway). */
function ftsString(word: string): string {
  return `"${word.replace(/"/g, '""')}"`;
}

export class SqliteSearchIndex {
  private readonly stmts;

  constructor(private readonly db: Database.Database) {
    this.stmts = {
      docid: db.prepare<[string], { docid: number }>('SELECT docid FROM image_docids WHERE image_id = ?'),
      newDocid: db.prepare<[string], { docid: number }>('INSERT INTO image_docids (image_id) VALUES (?) RETURNING docid'),
      dropDocid: db.prepare<[number]>('DELETE FROM image_docids WHERE docid = ?'),
      insertText: db.prepare<[number, string]>('INSERT INTO image_search (rowid, words) VALUES (?, ?)'),
      deleteText: db.prepare<[number]>('DELETE FROM image_search WHERE rowid = ?'),
      insertWord: db.prepare<[string, string, number]>('INSERT OR REPLACE INTO image_words (image_id, word, weight) VALUES (?, ?, ?)'),
      deleteWords: db.prepare<[string]>('DELETE FROM image_words WHERE image_id = ?'),
      wordsOf: db.prepare<[string], { word: string; weight: number }>('SELECT word, weight FROM image_words WHERE image_id = ?'),
      firstWord: db.prepare<[string, string], { word: string }>('SELECT word FROM image_words WHERE word >= ? AND word < ? ORDER BY word LIMIT 1'),
      nextWord: db.prepare<[string, string], { word: string }>('SELECT word FROM image_words WHERE word > ? AND word < ? ORDER BY word LIMIT 1'),
      hasWeight: db.prepare<[string, number], { one: number }>('SELECT 1 AS one FROM image_words WHERE word = ? AND weight = ? LIMIT 1'),
    };
  }

  /** Adds `image_words.weight` to a file written before it existed (schema version 4 then fills it). */
  static addWeightColumn(db: Database.Database): void {
    const cols = (db.prepare('PRAGMA table_info(image_words)').all() as { name: string }[]).map((c) => c.name);
    if (!cols.includes('weight')) db.exec('ALTER TABLE image_words ADD COLUMN weight INTEGER NOT NULL DEFAULT 1');
  }

  /**
   * The image's words, replacing what was indexed before (call inside the write's transaction).
   * A replace whose words are unchanged (most writes: status, checksum, outbox) writes nothing;
   * `rebuild` writes anyway (a migration filling the index).
   */
  write(doc: ImageDoc, mode: 'new' | 'replace' | 'rebuild'): void {
    const words = weightedWords(doc);
    if (mode === 'replace' && this.unchanged(doc.id, words)) return;
    if (mode !== 'new') this.remove(doc.id);
    for (const [word, weight] of words) this.stmts.insertWord.run(doc.id, word, weight);
    if (words.size === 0) return;
    const { docid } = this.stmts.newDocid.get(doc.id)!;
    this.stmts.insertText.run(docid, [...words.keys()].join(' '));
  }

  private unchanged(imageId: string, words: Map<string, number>): boolean {
    const stored = this.stmts.wordsOf.all(imageId);
    return stored.length === words.size && stored.every((r) => words.get(r.word) === r.weight);
  }

  remove(imageId: string): void {
    this.stmts.deleteWords.run(imageId);
    const row = this.stmts.docid.get(imageId);
    if (!row) return;
    this.stmts.deleteText.run(row.docid);
    this.stmts.dropDocid.run(row.docid);
  }

  /** Whether the prefix has at most MAX_COMPLETIONS distinct words (one index seek per word found). */
  private fewCompletions(prefix: string): boolean {
    const end = prefixEnd(prefix);
    let row = this.stmts.firstWord.get(prefix, end);
    for (let n = 0; row; n++) {
      if (n >= MAX_COMPLETIONS) return false;
      row = this.stmts.nextWord.get(row.word, end);
    }
    return true;
  }

  /**
   * The FTS5 query matching the search's words (and its prefix when FTS5 serves it cheaply:
   * `complete` then, the query is the whole search), or null when it would only repeat what one
   * side-table probe says (a single word).
   */
  matchExpression(search: Search): { match: string; complete: boolean } | null {
    const terms = search.words.map(ftsString);
    const withPrefix = [...search.prefix].length <= INDEXED_PREFIX || this.fewCompletions(search.prefix);
    if (withPrefix) terms.push(`${ftsString(search.prefix)}*`);
    return terms.length >= 2 ? { match: terms.join(' AND '), complete: withPrefix } : null;
  }

  /** SQL selecting the image ids (as `did`) matching `match`: a driving set for the list query. */
  static matchSql(): string {
    return 'SELECT x.image_id AS did FROM image_search s CROSS JOIN image_docids x ON x.docid = s.rowid WHERE image_search MATCH ?';
  }

  /**
   * The scores an image matching the search can have in this store, best first: from the
   * weights each word is found with (three index seeks a word; a prefix's completions one by
   * one, or every weight when it has more than MAX_COMPLETIONS). A score listed may still have
   * no image (the words' weights need not meet in one image): its tier is then an empty walk.
   */
  possibleScores(search: Search): number[] {
    return possibleScores(this.termWeights(search).perTerm);
  }

  /**
   * For each term (the words, then the prefix), the weights it is found with (see
   * possibleScores), and the prefix's completions (null: more than MAX_COMPLETIONS).
   */
  termWeights(search: Search): TermWeights {
    const weightsOf = (word: string) => ALL_WEIGHTS.filter((w) => this.stmts.hasWeight.get(word, w) !== undefined);
    const perTerm = search.words.map(weightsOf);
    const found = new Set<number>();
    let completions: string[] | null = [];
    const end = prefixEnd(search.prefix);
    for (let row = this.stmts.firstWord.get(search.prefix, end); row; row = this.stmts.nextWord.get(row.word, end)) {
      if (completions.length >= MAX_COMPLETIONS) {
        for (const w of ALL_WEIGHTS) found.add(w);
        completions = null;
        break;
      }
      completions.push(row.word);
      for (const w of weightsOf(row.word)) found.add(w);
    }
    perTerm.push([...found]);
    return { perTerm, completions };
  }

  /**
   * SQL selecting (as `did`) the images whose score is `score`, from the index alone: for each
   * way of reaching the score (one weight per term), the images holding the first word at its
   * weight (an index range of image_words_word_weight), each probed for the other terms' exact
   * weights. Counted to a bound, it proves a tier empty at the cost of that range instead of a
   * walk of every image, and drives a small tier. Null when there are more than
   * MAX_TIER_COMBINATIONS ways (many words): the tier is walked.
   */
  static tierSql(search: Search, terms: TermWeights, score: number): { sql: string; params: unknown[] } | null {
    const { perTerm, completions } = terms;
    const combos: number[][] = [];
    // The sums terms i… can make: the walk enters only branches that reach the score, so it stops
    // after at most MAX_TIER_COMBINATIONS + 1 ways instead of trying 3^terms dead ends (16 common
    // words: seconds of CPU with the event loop held).
    const reachable: Set<number>[] = [new Set([0])];
    for (let i = perTerm.length - 1; i >= 0; i--) {
      const after = reachable[0]!;
      reachable.unshift(new Set(perTerm[i]!.flatMap((w) => [...after].map((sum) => sum + w))));
    }
    const pick = (i: number, left: number, chosen: number[]): boolean => {
      if (!reachable[i]!.has(left)) return true;
      if (i === perTerm.length) {
        if (left === 0) combos.push(chosen);
        return combos.length <= MAX_TIER_COMBINATIONS;
      }
      for (const w of perTerm[i]!) if (w <= left && !pick(i + 1, left - w, [...chosen, w])) return false;
      return true;
    };
    if (!pick(0, score, [])) return null;
    const parts: string[] = [];
    const params: unknown[] = [];
    const end = prefixEnd(search.prefix);
    for (const combo of combos) {
      const prefixWeight = combo[combo.length - 1]!;
      if (search.words.length === 0) {
        // A prefix alone: the images with a completion at this weight, one index range a
        // completion (UNION: an image with two is one row; the score clause keeps those whose best it is).
        if (!completions) return null;
        parts.push(completions.map(() => 'SELECT a.image_id AS did FROM image_words a WHERE a.word = ? AND a.weight = ?').join(' UNION '));
        for (const word of completions) params.push(word, prefixWeight);
        continue;
      }
      const probes: string[] = [];
      params.push(search.words[0], combo[0]);
      for (let i = 1; i < search.words.length; i++) {
        probes.push('(SELECT w.weight FROM image_words w WHERE w.image_id = a.image_id AND w.word = ?) = ?');
        params.push(search.words[i], combo[i]);
      }
      probes.push('(SELECT max(w.weight) FROM image_words w WHERE w.image_id = a.image_id AND w.word >= ? AND w.word < ?) = ?');
      params.push(search.prefix, end, prefixWeight);
      parts.push(`SELECT a.image_id AS did FROM image_words a WHERE a.word = ? AND a.weight = ? AND ${probes.join(' AND ')}`);
    }
    return combos.length ? { sql: parts.join(' UNION ALL '), params } : null;
  }

  /**
   * SQL computing an image's core/search.ts `relevance` (the row `images`): for each word the
   * weight it is found with, plus the best weight of the prefix's completions; 0 for a term not found.
   */
  static scoreSql(search: Search): { expr: string; params: unknown[] } {
    const parts: string[] = [];
    const params: unknown[] = [];
    for (const word of search.words) {
      parts.push('coalesce((SELECT w.weight FROM image_words w WHERE w.image_id = images.id AND w.word = ?), 0)');
      params.push(word);
    }
    parts.push('coalesce((SELECT max(w.weight) FROM image_words w WHERE w.image_id = images.id AND w.word >= ? AND w.word < ?), 0)');
    params.push(search.prefix, prefixEnd(search.prefix));
    return { expr: `(${parts.join(' + ')})`, params };
  }
}
