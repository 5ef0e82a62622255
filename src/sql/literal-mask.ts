/**
 * A cache key that is the same for statements that differ only in the values
 * of their literals (`... WHERE aid = 12` and `... WHERE aid = 97`), so that
 * an ORM's or pgbench's stream of distinct texts is parsed once per shape.
 *
 * NOTES.md: a regex is not safe for this (it and PostgreSQL's lexer disagree
 * on dollar quotes, E'' strings, U&'' strings, comments). This is a lexer for
 * a deliberately small subset of SQL on which it agrees with PostgreSQL's
 * scanner (standard_conforming_strings on, which Airlock enforces), and it
 * gives up (returns null) on anything outside it: comments, dollar signs,
 * backslashes, double quotes, prefixed strings, non-ASCII outside string
 * literals, number forms other than plain integers and decimals.
 * https://www.postgresql.org/docs/current/sql-syntax-lexical.html
 *
 * Integer and decimal constants are masked differently, since the grammar
 * tells them apart (Iconst / FCONST); string constants are one token kind
 * (Sconst) whatever their content. So two texts with the same key have the
 * same token stream up to the values of constants, hence the same parse tree
 * shape.
 */

/** Longest text worth masking; longer ones are parsed as they are. */
export const MAX_MASKED_LENGTH = 8192;

const enum Ch {
  Quote = 0x27,
  Dot = 0x2e,
  Minus = 0x2d,
  Slash = 0x2f,
  Star = 0x2a,
}

/** Characters allowed outside string literals, besides letters, digits and '_'. */
const PUNCTUATION = new Set(' \t\n\r,()=<>*+-/%.;:[]|'.split('').map((c) => c.charCodeAt(0)));

function isIdentChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x5f;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** The literal-masked form of `text`, or null when the text is outside the subset this lexer reads exactly. */
export function maskLiterals(text: string): string | null {
  const n = text.length;
  if (n > MAX_MASKED_LENGTH) return null;
  let out = '';
  let copyFrom = 0;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === Ch.Quote) {
      // A quote right after a letter or digit is a prefixed string (E'', B'', X'', N'') or worse.
      if (i > 0 && isIdentChar(text.charCodeAt(i - 1))) return null;
      let j = i + 1;
      for (;;) {
        if (j >= n) return null;
        const d = text.charCodeAt(j);
        if (d === 0x5c) return null; // a backslash: leave escape questions to the real parser
        if (d === Ch.Quote) {
          if (j + 1 < n && text.charCodeAt(j + 1) === Ch.Quote) {
            j += 2;
            continue;
          }
          break;
        }
        j++;
      }
      // The token after a string must not glue onto it (e.g. 'a'UESCAPE is not in the subset anyway).
      if (j + 1 < n && isIdentChar(text.charCodeAt(j + 1))) return null;
      out += text.slice(copyFrom, i) + "'?'";
      i = j + 1;
      copyFrom = i;
      continue;
    }
    if (isDigit(c)) {
      const prev = i > 0 ? text.charCodeAt(i - 1) : 0x20;
      if (isIdentChar(prev)) {
        // Part of an identifier such as t1.
        i++;
        continue;
      }
      if (prev === Ch.Dot) return null;
      let j = i;
      while (j < n && isDigit(text.charCodeAt(j))) j++;
      let decimal = false;
      if (j < n && text.charCodeAt(j) === Ch.Dot) {
        if (j + 1 >= n || !isDigit(text.charCodeAt(j + 1))) return null;
        decimal = true;
        j++;
        while (j < n && isDigit(text.charCodeAt(j))) j++;
      }
      if (j < n && (isIdentChar(text.charCodeAt(j)) || text.charCodeAt(j) === Ch.Dot)) return null;
      out += text.slice(copyFrom, i) + (decimal ? '0.0' : '0');
      i = j;
      copyFrom = i;
      continue;
    }
    if (isIdentChar(c)) {
      i++;
      continue;
    }
    if (!PUNCTUATION.has(c)) return null;
    if ((c === Ch.Minus && text.charCodeAt(i + 1) === Ch.Minus) || (c === Ch.Slash && text.charCodeAt(i + 1) === Ch.Star)) {
      return null; // a comment
    }
    i++;
  }
  return out + text.slice(copyFrom);
}
