// The JSON API (docs/api.md), with the access token when there is one.

import { state } from './state.js';

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// Called when an answer is 401 (set by app.js: it asks for the token).
let onUnauthorized = () => {};
export function whenUnauthorized(fn) {
  onUnauthorized = fn;
}

/** GET `path` (relative to the page) with query `params`; the JSON answer, or an ApiError. */
export async function api(path, params) {
  const url = new URL(path, document.baseURI);
  if (params) for (const [k, v] of Object.entries(params)) if (v != null && v !== '') url.searchParams.set(k, v);
  const headers = { Accept: 'application/json' };
  if (state.token) headers.Authorization = 'Bearer ' + state.token;
  let res;
  try {
    res = await fetch(url, { headers, cache: 'no-store' });
  } catch (_) {
    throw new ApiError(0, 'the smarty server cannot be reached');
  }
  if (res.status === 401) {
    onUnauthorized();
    throw new ApiError(401, 'an access token is needed');
  }
  let body = null;
  try { body = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok) throw new ApiError(res.status, (body && body.error) || `HTTP ${res.status}`);
  if (body == null) throw new ApiError(res.status, 'the server sent no JSON');
  return body;
}

/** The path of the selected meter's endpoint `what` (`latest`, `series`, …). */
export const meterPath = (what) => `api/meters/${encodeURIComponent(state.meter.name)}/${what}`;
