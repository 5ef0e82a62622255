// Small DOM helpers. Everything shown is built with text nodes, never from
// HTML strings, so nothing an agent wrote (a statement, a reason, a row) can
// become markup or script on this page.

/**
 * Creates an element. `props`: attributes, `class`, `on<event>` handlers,
 * `dataset`; children: nodes, strings, numbers, arrays, null/false (skipped).
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2).toLowerCase(), value);
    else if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'value') el.value = value;
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** "3 min ago", "in 2 h" */
export function relative(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '';
  const s = Math.round((t - now) / 1000);
  const a = Math.abs(s);
  const text = a < 45 ? `${a} s` : a < 2700 ? `${Math.round(a / 60)} min` : a < 129600 ? `${Math.round(a / 3600)} h` : `${Math.round(a / 86400)} d`;
  return s < 0 ? `${text} ago` : `in ${text}`;
}

/** A time as the reader's clock shows it, with the ISO time on hover. */
export function time(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return h('span', {}, iso ?? '');
  const today = new Date().toDateString() === d.toDateString();
  const text = today ? d.toLocaleTimeString() : d.toLocaleString();
  return h('time', { datetime: iso, title: `${iso} (${relative(iso)})` }, text);
}

/** A pill: `tone` is one of ok, warn, bad, info, muted. */
export function pill(text, tone = 'muted', props = {}) {
  return h('span', { ...props, class: `pill ${tone}` }, text);
}

export function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

/**
 * Re-renders `container` without losing what the human was typing: inputs
 * are matched by their name within the nearest [data-key] scope, and their
 * values (and the focus) carried over. A refresh from the server must never
 * wipe a half-written reason.
 */
export function keepingInputs(container, render) {
  const saved = new Map();
  let focused = null;
  for (const el of container.querySelectorAll('input, select, textarea')) {
    const key = inputKey(el);
    if (key === null) continue;
    saved.set(key, el.value);
    if (el === document.activeElement) focused = key;
  }
  render();
  for (const el of container.querySelectorAll('input, select, textarea')) {
    const key = inputKey(el);
    if (key === null) continue;
    if (saved.has(key)) el.value = saved.get(key);
    if (key === focused) el.focus();
  }
}

function inputKey(el) {
  if (!el.name) return null;
  const scope = el.closest('[data-key]');
  return `${scope ? scope.dataset.key : ''}/${el.name}`;
}
