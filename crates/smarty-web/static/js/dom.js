// Small helpers for the page's elements.

export const $ = (id) => document.getElementById(id);

/** Sets an element's text, only when it changes (no needless layout). */
export function setText(el, text) {
  if (el && el.textContent !== text) el.textContent = text;
}

/** Shows `text` in an empty-state element, or hides it for ''. */
export function showEmpty(emptyEl, text) {
  emptyEl.textContent = text;
  emptyEl.hidden = !text;
}

/** A colour of the stylesheet (`--name`), for the charts. */
export function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue('--' + name).trim() || '#888';
}

/** The connection indicator of the header. */
export function setConn(kind, text) {
  const el = $('conn');
  if (el.dataset.state !== kind) el.dataset.state = kind;
  if ($('conn-text').textContent !== text) $('conn-text').textContent = text;
}

/** The banner below the header ('' hides it). */
export function banner(text) {
  const el = $('banner');
  el.textContent = text || '';
  el.hidden = !text;
}
