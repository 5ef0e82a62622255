/**
 * The dashboard's page and assets, served by Airlock itself from
 * src/web/dashboard/ (plain ES modules and CSS: no build step, no CDN, no
 * font or script from anywhere else, since many run Airlock where nothing
 * outside is reachable). They hold no data; everything the page shows it
 * asks the admin API for, with the session cookie.
 *
 * Every answer of the admin listener carries SECURITY_HEADERS: a strict
 * Content-Security-Policy (only this origin's scripts, styles and
 * connections; no inline script; no framing), nosniff, no referrer.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';

/** The files under src/web/dashboard/ that are served, at /ui/<name>: a closed set, so no path from a request reaches the file system. */
export const DASHBOARD_FILES = ['app.js', 'api.js', 'dom.js', 'pages.js', 'sql.js', 'style.css', 'icon.svg'] as const;

/** Paths answered without a session: the page, its assets, the icon. */
export const PUBLIC_ASSET_PATHS: ReadonlySet<string> = new Set(['/', '/favicon.ico', ...DASHBOARD_FILES.map((f) => `/ui/${f}`)]);

export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

const TYPES: Record<string, string> = {
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  svg: 'image/svg+xml',
  html: 'text/html; charset=utf-8',
};

/**
 * Where the files are: beside this module when it runs from src/ (tests,
 * tsx) or from a build that copied them, or back in src/ when it runs
 * compiled from dist/src/web/; null when they are in neither place.
 */
export function dashboardDir(): string | null {
  for (const url of dashboardDirCandidates()) {
    const path = fileURLToPath(url);
    if (existsSync(`${path}index.html`)) return path;
  }
  return null;
}

function dashboardDirCandidates(): URL[] {
  return [new URL('./dashboard/', import.meta.url), new URL('../../../src/web/dashboard/', import.meta.url)];
}

/**
 * Reads the files once (they are small) and serves them. Without them the
 * admin API still runs (the CLI, and the freeze, must not depend on a page):
 * `/` then says what is missing, and the log says so at start.
 */
export async function registerDashboardAssets(app: FastifyInstance, log: (line: string) => void): Promise<void> {
  const dir = dashboardDir();
  if (dir === null) {
    const where = dashboardDirCandidates().map((u) => fileURLToPath(u)).join(' or ');
    log(`dashboard: its files are not in ${where}, so the admin API runs without the dashboard. Reinstall Airlock to get it back.`);
    const missing = async (_request: unknown, reply: { code: (n: number) => { send: (b: unknown) => unknown } }) =>
      reply.code(404).send({ error: `This Airlock has no dashboard files (looked in ${where}); the admin API works without them. Reinstall Airlock to get the dashboard.` });
    app.get('/', missing);
    app.get('/favicon.ico', missing);
    for (const name of DASHBOARD_FILES) app.get(`/ui/${name}`, missing);
    return;
  }
  const files = new Map<string, { body: Buffer; type: string }>();
  for (const name of ['index.html', ...DASHBOARD_FILES]) {
    files.set(name, { body: await readFile(`${dir}${name}`), type: TYPES[name.slice(name.lastIndexOf('.') + 1)] ?? 'application/octet-stream' });
  }
  const serve = (name: string) => {
    const file = files.get(name)!;
    return async (_request: unknown, reply: { header: (k: string, v: string) => unknown; send: (b: Buffer) => unknown }) => {
      // Revalidated each time: an upgrade must never leave an old script talking to a new API.
      reply.header('cache-control', 'no-cache');
      reply.header('content-type', file.type);
      return reply.send(file.body);
    };
  };
  app.get('/', serve('index.html'));
  app.get('/favicon.ico', serve('icon.svg'));
  for (const name of DASHBOARD_FILES) app.get(`/ui/${name}`, serve(name));
}
