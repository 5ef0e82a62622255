import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  PROFILES,
  SSL_MODES,
  checkConfigFile,
  configFileSchema,
  defaultReadRole,
  isLoopbackHost,
  parseListen,
  parseUpstreamUrl,
  renderConfigJsonSchema,
} from './schema.js';
import type { UpstreamTarget } from './schema.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

describe('parseUpstreamUrl', () => {
  const base: UpstreamTarget = {
    host: '127.0.0.1',
    port: 5432,
    user: 'airlock',
    password: null,
    database: 'app',
    sslmode: 'prefer',
    sslrootcert: null,
  };
  const valid: [string, Partial<UpstreamTarget>][] = [
    ['postgres://airlock@127.0.0.1:5432/app', {}],
    ['postgresql://airlock@127.0.0.1:5432/app', {}],
    ['POSTGRES://airlock@127.0.0.1/app', {}],
    ['postgres://airlock@/app', {}],
    ['postgres://airlock:secret@db.internal:6543/app', { host: 'db.internal', port: 6543, password: 'secret' }],
    ['postgres://airlock:@localhost/app', { host: 'localhost' }],
    ['postgres://air%40lock:p%40ss%2Fw%3Ard%25@h/app', { host: 'h', user: 'air@lock', password: 'p@ss/w:rd%' }],
    // An unencoded @ in the password still parses: the host follows the last @.
    ['postgres://airlock:p@ss@h/app', { host: 'h', password: 'p@ss' }],
    ['postgres://airlock:a:b@h/app', { host: 'h', password: 'a:b' }],
    ['postgres://airlock@[::1]:7000/app', { host: '::1', port: 7000 }],
    ['postgres://airlock@[::1]/app', { host: '::1' }],
    ['postgres://airlock@h/my%20db', { host: 'h', database: 'my db' }],
    ['postgres://airlock@h/app?sslmode=verify-full', { host: 'h', sslmode: 'verify-full' }],
    ['postgres://airlock@h/app?sslmode=disable', { host: 'h', sslmode: 'disable' }],
    [
      'postgres://airlock@h/app?sslmode=verify-ca&sslrootcert=certs/ca%20root.pem',
      { host: 'h', sslmode: 'verify-ca', sslrootcert: 'certs/ca root.pem' },
    ],
    ['postgres://airlock@h/app?', { host: 'h' }],
  ];
  it.each(valid)('parses %s', (url, expected) => {
    expect(parseUpstreamUrl(url)).toEqual({ ok: true, value: { ...base, ...expected } });
  });

  const invalid: [string, string][] = [
    ['127.0.0.1:5432/app', 'must be a PostgreSQL URL'],
    ['mysql://airlock@h/app', 'must use the postgres:// or postgresql:// scheme (got "mysql://")'],
    ['postgres://h/app', 'must name the user'],
    ['postgres://airlock@h', 'must name the database'],
    ['postgres://airlock@h/', 'must name the database'],
    ['postgres://airlock@h/app/more', 'has a / in the database name'],
    ['postgres://airlock@h:0/app', 'the port must be a number from 1 to 65535 (got "0")'],
    ['postgres://airlock@h:65536/app', 'the port must be a number from 1 to 65535 (got "65536")'],
    ['postgres://airlock@h:port/app', 'the port must be a number'],
    ['postgres://airlock@::1/app', 'write it in brackets'],
    ['postgres://airlock@[::1/app', 'never closes it'],
    ['postgres://airlock@[nope]/app', 'not an IPv6 address'],
    ['postgres://airlock@h1,h2/app', 'names several hosts'],
    ['postgres://airlock@%2Fvar%2Frun%2Fpostgresql/app', 'Unix-domain sockets are not supported'],
    ['postgres://airlock@bad host/app', 'must be a host name or an IP address'],
    ['postgres://airlock@h/app?application_name=x', 'has the query parameter "application_name", which Airlock does not support'],
    ['postgres://airlock@h/app?connect_timeout=3', 'use limits.connect_timeout_ms'],
    ['postgres://airlock@h/app?sslmode=allow', 'sslmode must be one of: disable, prefer, require, verify-ca, verify-full (got "allow")'],
    ['postgres://airlock@h/app?sslmode=require&sslmode=disable', 'sets the query parameter sslmode twice'],
    ['postgres://airlock@h/app?sslrootcert=', 'sets the query parameter sslrootcert to nothing'],
    ['postgres://airlock@h/app#x', 'must not contain #'],
    ['postgres://airlock:pa/ss@h/app', 'has an @ after the host'],
    ['postgres://airlock:100%@h/app', 'the password is not valid percent-encoding'],
    ['postgres://%zz@h/app', 'the user name is not valid percent-encoding'],
    [`postgres://${'u'.repeat(64)}@h/app`, 'the user name is longer than 63 bytes'],
    [`postgres://airlock@h/${'d'.repeat(64)}`, 'the database name is longer than 63 bytes'],
  ];
  it.each(invalid)('refuses %s', (url, fragment) => {
    const result = parseUpstreamUrl(url);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.problems.join('\n')).toContain(fragment);
  });

  it('reports every problem in a URL, not only the first', () => {
    const result = parseUpstreamUrl('postgres://airlock@h:99999/app?sslmode=nope&foo=1');
    expect(result).toEqual({
      ok: false,
      problems: [
        'the port must be a number from 1 to 65535 (got "99999")',
        'sslmode must be one of: disable, prefer, require, verify-ca, verify-full (got "nope")',
        'has the query parameter "foo", which Airlock does not support; only sslmode and sslrootcert are allowed',
      ],
    });
  });

  it.each([
    'postgres://airlock:S3cretPW@h:99999/app',
    'postgres://airlock:S3cretPW@h/app?x=1',
    'postgres://airlock:S3cretPW%zz@h/app',
    'postgres://airlock:S3cretPW#@h/app',
    'postgres://airlock:S3cret/PW@h/app',
    'mysql://airlock:S3cretPW@h/app',
  ])('never quotes the password in its problems: %s', (url) => {
    const result = parseUpstreamUrl(url);
    expect(result.ok).toBe(false);
    if (!result.ok) for (const p of result.problems) expect(p).not.toMatch(/S3cret|PW/);
  });
});

describe('parseListen', () => {
  it.each([
    ['127.0.0.1:6432', { host: '127.0.0.1', port: 6432 }],
    ['0.0.0.0:5433', { host: '0.0.0.0', port: 5433 }],
    ['localhost:1', { host: 'localhost', port: 1 }],
    ['[::1]:6432', { host: '::1', port: 6432 }],
    ['[::]:6432', { host: '::', port: 6432 }],
    ['airlock.internal:6432', { host: 'airlock.internal', port: 6432 }],
    ['127.0.0.1:0', { host: '127.0.0.1', port: 0 }],
  ])('parses %s', (text, expected) => {
    expect(parseListen(text)).toEqual({ ok: true, value: expected });
  });

  it.each([
    ['localhost', 'must be host:port'],
    [':6432', 'must be host:port'],
    ['127.0.0.1:', 'the port must be a number from 0 to 65535 (got "")'],
    ['127.0.0.1:65536', 'the port must be a number from 0 to 65535 (got "65536")'],
    ['127.0.0.1:-1', 'the port must be a number'],
    ['::1:6432', 'write it in brackets'],
    ['[::1]', 'must be host:port'],
    ['[::1]6432', 'text after the IPv6 address'],
    ['[127.0.0.1]:6432', 'not an IPv6 address'],
    ['my host:6432', 'must be a host name or an IP address'],
  ])('refuses %s', (text, fragment) => {
    const result = parseListen(text);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.problems.join('\n')).toContain(fragment);
  });
});

describe('defaultReadRole', () => {
  it.each([
    ['claude', 'airlock_read_claude'],
    ['Claude', 'airlock_read_claude'],
    ['cursor-bot', 'airlock_read_cursor_bot'],
    ['a$b', 'airlock_read_a_b'],
    ['_x_9', 'airlock_read__x_9'],
    // PostgreSQL would cut the name to 63 bytes anyway; cutting it here keeps config and database in agreement.
    ['n'.repeat(63), `airlock_read_${'n'.repeat(50)}`],
  ])('%s → %s', (name, role) => {
    expect(defaultReadRole(name)).toBe(role);
    expect(role.length).toBeLessThanOrEqual(63);
  });
});

describe('isLoopbackHost', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.1.2.3', true],
    ['::1', true],
    ['localhost', true],
    ['LOCALHOST', true],
    ['db.localhost', true],
    ['0.0.0.0', false],
    ['::', false],
    ['10.0.0.1', false],
    ['db.example.com', false],
    ['127.0.0.1.example.com', false],
  ])('%s → %s', (host, loopback) => {
    expect(isLoopbackHost(host)).toBe(loopback);
  });
});

describe('checkConfigFile', () => {
  const minimal = { upstream: 'postgres://airlock@h/app', agents: [{ name: 'claude', password: 'long-enough-pw' }] };

  it('fills in defaults', () => {
    const { problems, sections } = checkConfigFile(minimal);
    expect(problems).toEqual([]);
    expect(sections).toMatchObject({
      listen: { host: '127.0.0.1', port: 6432 },
      state_dir: '.airlock',
      agents: [{ name: 'claude', password: 'long-enough-pw', profile: 'read-only' }],
      audit: { flush_ms: 5 },
      limits: { max_message_bytes: 64 * 1024 * 1024, max_clients: 200, connect_timeout_ms: 5000 },
    });
  });

  it.each([
    [{ ...minimal, audit: { flushMs: 5 } }, ['audit', 'flushMs'], 'is not a known key (did you mean flush_ms?)'],
    [{ ...minimal, agnets: [] }, ['agnets'], 'is not a known key (did you mean agents?)'],
    [{ ...minimal, Listen: 'x' }, ['Listen'], 'is not a known key (did you mean listen?)'],
    [
      { ...minimal, agents: [{ ...minimal.agents[0], readRole: 'x' }] },
      ['agents', 0, 'readRole'],
      'is not a known key (did you mean read_role?)',
    ],
    [
      { ...minimal, tls: { cert: 'a', key: 'b', ca: 'c' } },
      ['tls', 'ca'],
      'is not a known key (known keys here: cert, key)',
    ],
  ])('names unknown keys with a suggestion (%#)', (data, path, message) => {
    expect(checkConfigFile(data).problems).toEqual([{ path, message }]);
  });

  it('keeps the sections that are valid on their own when another is not', () => {
    const { problems, sections, validSections } = checkConfigFile({ ...minimal, limits: { max_clients: 0 } });
    expect(problems).toEqual([{ path: ['limits', 'max_clients'], message: 'must be at least 1 (got 0)' }]);
    expect(sections.agents?.[0]?.name).toBe('claude');
    expect(sections.upstream?.user).toBe('airlock');
    expect(validSections.has('limits')).toBe(false);
    expect(validSections.has('tls')).toBe(true);
    expect(sections.limits).toBeUndefined();
  });
});

describe('the JSON Schema for editors', () => {
  const committedPath = join(repoRoot, 'schema/airlock.schema.json');

  it('is committed as scripts/write-schema.ts writes it (run `npm run schema` after changing the schema)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-schema-'));
    try {
      const out = join(dir, 'airlock.schema.json');
      execFileSync(process.execPath, ['--import', 'tsx', 'scripts/write-schema.ts', out], { cwd: repoRoot, stdio: 'pipe' });
      const written = readFileSync(out, 'utf8');
      expect(written).toBe(renderConfigJsonSchema());
      expect(readFileSync(committedPath, 'utf8')).toBe(written);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('describes the file as written: closed objects, required keys, enums from the closed sets', () => {
    const schema = JSON.parse(renderConfigJsonSchema());
    expect(schema.required).toEqual(['upstream', 'agents']);
    expect(Object.keys(schema.properties)).toEqual(Object.keys(configFileSchema.shape));
    const agent = schema.properties.agents.items;
    expect(agent.properties.profile.enum).toEqual([...PROFILES]);
    expect(agent.required).toEqual(['name', 'password']);
    // The `i` flag does not survive into JSON Schema; the pattern itself must allow upper case.
    expect(new RegExp(agent.properties.name.pattern).test('Claude')).toBe(true);
    expect(schema.properties.listen.type).toBe('string');
    expect(schema.properties.upstream.type).toBe('string');

    const objects: unknown[] = [];
    const walk = (node: unknown) => {
      if (typeof node !== 'object' || node === null) return;
      const n = node as Record<string, unknown>;
      if (n.type === 'object') objects.push(n);
      Object.values(n).forEach(walk);
    };
    walk(schema);
    // root, tls, agent, agent.write_limits, write_limits, rule, undo, admin, admin.tls, mcp, two freeze window forms and weekly, tripwire, tripwire.webhook, approvals, approvals.webhook, audit, limits
    expect(objects.length).toBe(19);
    for (const o of objects) expect(o).toHaveProperty('additionalProperties', false);
    expect(SSL_MODES).toContain('verify-full');
  });
});
