// The dashboard's only way to the server: the admin API, the same endpoints
// the CLI uses, with the session cookie (sent by the browser, HttpOnly) and,
// on anything that changes state, the session's CSRF token.

let csrfToken = null;
const signedOutListeners = new Set();

/** Called when the server says the session is gone (401). */
export function onSignedOut(listener) {
  signedOutListeners.add(listener);
}

export function setCsrf(token) {
  csrfToken = token;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body && typeof body.error === 'string' ? body.error : `The admin API answered ${status}.`);
    this.status = status;
    this.body = body;
  }
}

/**
 * One request. Resolves to the JSON body; rejects with ApiError (its message
 * is the API's own sentence) for any answer but 2xx. `totp`: the second
 * factor, for approve and unfreeze when admin.totp_secret is set.
 */
export async function api(method, path, body, options = {}) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrfToken !== null) headers['x-csrf-token'] = csrfToken;
  if (options.totp) headers['x-airlock-totp'] = options.totp;
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin', cache: 'no-store' });
  } catch {
    throw new ApiError(0, { error: 'Airlock did not answer: it may be stopped, or the network is down. Nothing was changed by this page.' });
  }
  let json = null;
  try {
    json = await res.json();
  } catch {
    json = null;
  }
  if (res.status === 401 && path !== '/v1/session' && !(json && typeof json.error === 'string' && /TOTP/.test(json.error))) {
    for (const l of signedOutListeners) l();
  }
  if (!res.ok && !(options.accept ?? []).includes(res.status)) throw new ApiError(res.status, json);
  return options.withStatus ? { status: res.status, body: json } : json;
}

/** Who is signed in, or null. Also fetches a fresh CSRF token. */
export async function currentSession() {
  try {
    const s = await api('GET', '/v1/session');
    if (s.csrf) setCsrf(s.csrf);
    return s;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return null;
    throw err;
  }
}

export async function signIn(token, totp) {
  const s = await api('POST', '/v1/session', totp ? { token, totp } : { token });
  setCsrf(s.csrf);
  return s;
}

export async function signOut() {
  await api('DELETE', '/v1/session');
  csrfToken = null;
}
