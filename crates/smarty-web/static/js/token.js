// The access-token form both pages share (#token-form, #token-why, #token): shown when the
// API answers 401, the token kept in the browser once entered (docs/api.md, "Access").

import { whenUnauthorized } from './api.js';
import { $, setConn } from './dom.js';
import { saved, state } from './state.js';

// Shows the form when the API refuses the token: `needed` is the text for a page that has
// none yet, `onAsk` runs before the form shows (to stop what waits on the API), `onToken` once
// a token was entered.
export function tokenForm({ needed, onAsk = () => {}, onToken }) {
  whenUnauthorized(() => {
    if (state.needToken) return;
    state.needToken = true;
    onAsk();
    $('token-why').textContent = state.token
      ? 'The access token was refused. Enter the current one.'
      : needed;
    $('token-form').hidden = false;
    setConn('offline', 'Access token needed');
    $('token').focus();
  });
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const value = $('token').value.trim();
    if (!value) return;
    state.token = value;
    saved.set('smarty.token', value);
    state.needToken = false;
    $('token').value = '';
    $('token-form').hidden = true;
    onToken();
  });
}
