// A display-only SQL highlighter: splits a statement into keywords,
// strings, numbers, comments and the rest, as spans. It decides nothing
// (Airlock's judgement uses PostgreSQL's own parser); it only helps a human
// read what they are asked to approve.
import { h } from './dom.js';

const KEYWORDS = new Set(
  ('select from where and or not in is null update set delete insert into values returning join left right inner outer full cross on using ' +
    'group by order having limit offset as distinct union all except intersect case when then else end with recursive create alter drop ' +
    'table index view schema truncate cascade restrict begin commit rollback grant revoke merge matched do nothing conflict exists between like ilike ' +
    'true false default primary key references foreign constraint unique check add column rename to if only lateral for share nowait skip locked')
    .split(' '),
);

const TOKEN = /(--[^\n]*|\/\*[\s\S]*?\*\/)|('(?:[^']|'')*'?)|("(?:[^"]|"")*"?)|(\$[a-zA-Z_0-9]*\$[\s\S]*?\$[a-zA-Z_0-9]*\$)|(\b\d+(?:\.\d+)?\b)|(\$\d+)|([a-zA-Z_][a-zA-Z_0-9$]*)/g;

/** The statement as a <code> element with highlighted tokens. */
export function highlightSql(text) {
  const code = h('code', { class: 'sql' });
  let last = 0;
  for (const m of text.matchAll(TOKEN)) {
    if (m.index > last) code.append(document.createTextNode(text.slice(last, m.index)));
    const [all, comment, str, ident, dollar, num, param, word] = m;
    let cls = null;
    if (comment) cls = 'tok-comment';
    else if (str || dollar) cls = 'tok-string';
    else if (ident) cls = 'tok-ident';
    else if (num || param) cls = 'tok-number';
    else if (word && KEYWORDS.has(word.toLowerCase())) cls = 'tok-keyword';
    code.append(cls === null ? document.createTextNode(all) : h('span', { class: cls }, all));
    last = m.index + all.length;
  }
  if (last < text.length) code.append(document.createTextNode(text.slice(last)));
  return code;
}
