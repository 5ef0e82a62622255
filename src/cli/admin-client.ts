/**
 * The CLI's side of the admin API (src/web/admin-api.ts): commands that
 * change what agents may do ask the running server, with an admin token,
 * rather than touching the state store (DESIGN.md, "Trust boundaries").
 */
import { isIP } from 'node:net';
import { request as httpsRequest } from 'node:https';

export interface AdminTarget {
  host: string;
  port: number;
  token: string;
  /** A current TOTP code, for the actions that need one (admin.totp_secret). */
  totp?: string;
  /** 'https' when the admin listener has admin.tls. */
  scheme?: 'http' | 'https';
  /** PEM certificates to trust for it (the config's admin.tls.cert); the system's CAs otherwise. */
  ca?: string;
}

/** The parts of a terminal the hidden prompt uses; process.stdin and process.stderr fit. */
export interface PromptInput {
  isTTY?: boolean;
  setRawMode?(mode: boolean): unknown;
  on(event: 'data', listener: (chunk: Buffer | string) => void): unknown;
  off(event: 'data', listener: (chunk: Buffer | string) => void): unknown;
  resume(): unknown;
  pause(): unknown;
}
export interface PromptOutput {
  write(text: string): unknown;
}

const NO_TOKEN =
  'Set AIRLOCK_ADMIN_TOKEN to an admin token (airlock admin token create --name <you>, run as Airlock\'s OS user), or run this command on a terminal to be asked for it.';

/**
 * The token from AIRLOCK_ADMIN_TOKEN, or a hidden prompt on a TTY (no echo);
 * throws a clear Error otherwise.
 */
export async function adminTokenFromEnvOrPrompt(
  env: NodeJS.ProcessEnv = process.env,
  terminal: { input: PromptInput; output: PromptOutput } = { input: process.stdin, output: process.stderr },
): Promise<string> {
  const fromEnv = env.AIRLOCK_ADMIN_TOKEN?.trim();
  if (fromEnv) return fromEnv;
  if (!terminal.input.isTTY || typeof terminal.input.setRawMode !== 'function') throw new Error(NO_TOKEN);
  const token = (await readHidden(terminal.input, terminal.output, 'Admin token: ')).trim();
  if (!token) throw new Error(`No admin token was given. ${NO_TOKEN}`);
  return token;
}

/**
 * Reads one line from a terminal in raw mode, echoing nothing, so the token
 * stays off the screen and out of scrollback. Backspace edits; Ctrl-C and
 * Ctrl-D cancel.
 */
export function readHidden(input: PromptInput, output: PromptOutput, prompt: string): Promise<string> {
  output.write(prompt);
  input.setRawMode?.(true);
  input.resume();
  return new Promise((resolve, reject) => {
    let line = '';
    const finish = (result: { ok: true; value: string } | { ok: false; error: Error }) => {
      input.off('data', onData);
      input.setRawMode?.(false);
      input.pause();
      output.write('\n');
      if (result.ok) resolve(result.value);
      else reject(result.error);
    };
    const onData = (chunk: Buffer | string) => {
      for (const ch of typeof chunk === 'string' ? chunk : chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return finish({ ok: true, value: line });
        if (ch === '\u0003' || ch === '\u0004') return finish({ ok: false, error: new Error('Cancelled: no admin token was given.') });
        if (ch === '\u007f' || ch === '\b') line = line.slice(0, -1);
        else if (ch >= ' ') line += ch;
      }
    };
    input.on('data', onData);
  });
}

const TIMEOUT_MS = 15_000;

/**
 * Sends one request to the admin API. A refused connection (no server) is an
 * Error saying so; any HTTP answer, errors included, is returned for the
 * caller to show: the API's errors are `{ error: "<sentence>" }`.
 */
export async function adminRequest(
  target: AdminTarget,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
): Promise<{
  status: number;
  // The API's JSON: its shape depends on the endpoint (and is `{ error }` on failure), and the API is the one place it is defined; callers read the fields they know.
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}> {
  // Checked here, not left to fetch: its error for a bad header value quotes the value, the token included.
  if (!/^[\x21-\x7e]+$/.test(target.token)) {
    throw new Error('The admin token holds spaces or characters no admin token has: check AIRLOCK_ADMIN_TOKEN, or paste the token again.');
  }
  const where = `${isIP(target.host) === 6 ? `[${target.host}]` : target.host}:${target.port}`;
  const headers: Record<string, string> = { authorization: `Bearer ${target.token}`, accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (target.totp !== undefined) headers['x-airlock-totp'] = target.totp;
  if (target.scheme === 'https') return httpsJson(target, where, method, path, headers, body);
  let response: Response;
  try {
    response = await fetch(`http://${where}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (err) {
    throw connectionError(err as Error, where);
  }
  return { status: response.status, body: parseAnswer(await response.text(), response.status, where) };
}

function parseAnswer(text: string, status: number, where: string): unknown {
  try {
    return text === '' ? null : JSON.parse(text);
  } catch {
    // Not the admin API (something else holds the port), or a proxy's error page: show what came back.
    return { error: `The answer from ${where} is not JSON (HTTP ${status}): is the admin API at that address? It began: ${text.slice(0, 200)}` };
  }
}

/** adminRequest over HTTPS (admin.tls): node:https, since fetch takes no CA of its own. */
function httpsJson(
  target: AdminTarget,
  where: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body: unknown,
): Promise<{ status: number; body: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: target.host, port: target.port, path, method, headers, ...(target.ca === undefined ? {} : { ca: target.ca }), timeout: TIMEOUT_MS }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: parseAnswer(text, res.statusCode ?? 0, where) }));
      res.on('error', (err) => reject(connectionError(Object.assign(new Error(err.message), { cause: err }), where)));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { name: 'TimeoutError' })));
    req.on('error', (err) => reject(err.name === 'TimeoutError' ? connectionError(err, where) : connectionError(Object.assign(new Error(err.message), { cause: err }), where)));
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** The network error in words; fetch wraps the socket's error as its `cause` (an AggregateError when several addresses were tried). */
function connectionError(err: Error, where: string): Error {
  if (err.name === 'TimeoutError') return new Error(`Airlock's admin API at ${where} did not answer within ${TIMEOUT_MS / 1000} seconds.`);
  const cause = (err as { cause?: NodeJS.ErrnoException & { errors?: NodeJS.ErrnoException[] } }).cause;
  const codes = [cause?.code, ...(cause?.errors ?? []).map((e) => e.code)];
  if (codes.includes('ECONNREFUSED')) {
    return new Error(`Airlock's admin API is not answering at ${where}: is \`airlock start\` running?`, { cause: err });
  }
  return new Error(`Airlock's admin API at ${where} could not be reached: ${cause?.message ?? err.message}.`, { cause: err });
}
