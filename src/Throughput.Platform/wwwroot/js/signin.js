import { api, pageForRole, signIn, text } from './app.js';

const form = document.getElementById('signin');
const input = document.getElementById('key');
if (new URLSearchParams(location.search).has('expired')) text('signin-error', 'Your key was not accepted any more; sign in again.');
input.focus();

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const key = input.value.trim();
  if (!key.startsWith('tpk_')) {
    text('signin-error', 'An API key starts with tpk_.');
    input.focus();
    return;
  }
  text('signin-error', '');
  const response = await api('/v1/me', { key });
  if (!response.ok) {
    text('signin-error', response.status === 401 ? 'That key was not accepted: it is unknown or revoked.' : `Sign-in failed (HTTP ${response.status}).`);
    input.select();
    return;
  }
  const caller = await response.json();
  if (!pageForRole[caller.role]) {
    text('signin-error', `${caller.role} keys have no dashboard page.`);
    return;
  }
  signIn(key, caller);
  location.assign(pageForRole[caller.role]);
});
