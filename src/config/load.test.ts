import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, describeUpstream, formatKeyPath, loadConfig, parseConfig } from './load.js';
import type { AirlockConfig, UpstreamTarget } from './load.js';
import { configFileSchema } from './schema.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'airlock-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const UPSTREAM_PW = 'Upstream-S3cret-pw';
const AGENT_PW = 'Agent-S3cret-password';
const ENV = { AIRLOCK_UPSTREAM_PASSWORD: UPSTREAM_PW, CLAUDE_DB_PASSWORD: AGENT_PW };

const MINIMAL = `listen: 127.0.0.1:6432
upstream: postgres://airlock:\${AIRLOCK_UPSTREAM_PASSWORD}@127.0.0.1:5432/app   # Airlock's own service account
agents:
  - name: claude
    password: \${CLAUDE_DB_PASSWORD}
    profile: read-only
`;

function parse(text: string, env: Record<string, string | undefined> = ENV) {
  return parseConfig(text, { source: 'airlock.yaml', baseDir: dir, env });
}

/** The problems `text` is refused with; fails the test if it is accepted. */
function problemsOf(text: string, env: Record<string, string | undefined> = ENV): string[] {
  try {
    parse(text, env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected the configuration to be refused, but it was accepted');
}

/** A file with the minimal upstream and one agent, plus `extra` lines and agent lines. */
function withAgent(agentLines: string, extra = ''): string {
  return `upstream: postgres://airlock@127.0.0.1/app\n${extra}agents:\n  - name: claude\n    password: long-enough-password\n${agentLines}`;
}

// Self-signed EC certificates made for these tests only (openssl req -x509 / openssl ca).
const TEST_CERT = `-----BEGIN CERTIFICATE-----
MIIBhTCCASugAwIBAgIUKct/aVJGOW4VRAKPcj3QdMXv9HMwCgYIKoZIzj0EAwIw
FzEVMBMGA1UEAwwMYWlybG9jay10ZXN0MCAXDTI2MTEyNjE0NTIyOVoYDzIxMjYx
MTAyMTQ1MjI5WjAXMRUwEwYDVQQDDAxhaXJsb2NrLXRlc3QwWTATBgcqhkjOPQIB
BggqhkjOPQMBBwNCAAS37/PRQN6X8NtK6Xi36UVcZvtMBhpXRAVysSmxKJ4AXVRa
7HvVSLg2BBZSMu5c1uT/jKurVLR6/96yZ4q9RAFCo1MwUTAdBgNVHQ4EFgQUS9lF
BMnIx5uQgDu03xyor7lBQSYwHwYDVR0jBBgwFoAUS9lFBMnIx5uQgDu03xyor7lB
QSYwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiB3KdV67C7+U7su
JP4/lZ3w/oreEnDSsjfYay2KFNfzKwIhAK+WwPHoT2g6FWoGJteJUTXjAXctYGTv
P0WAuj7r0Sq6
-----END CERTIFICATE-----
`;
const TEST_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgbNvzKRPaoDkz3Jee
/gh4Ouvcv5dyO8v/t/IEFK1lHsKhRANCAAS37/PRQN6X8NtK6Xi36UVcZvtMBhpX
RAVysSmxKJ4AXVRa7HvVSLg2BBZSMu5c1uT/jKurVLR6/96yZ4q9RAFC
-----END PRIVATE KEY-----
`;
/** Valid 2020-01-01 to 2020-01-02. */
const EXPIRED_CERT = `-----BEGIN CERTIFICATE-----
MIIBHDCBwgIBATAKBggqhkjOPQQDAjAaMRgwFgYDVQQDDA9haXJsb2NrLWV4cGly
ZWQwHhcNMjAwMTAxMDAwMDAwWhcNMjAwMTAyMDAwMDAwWjAaMRgwFgYDVQQDDA9h
aXJsb2NrLWV4cGlyZWQwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQVQz78pHWZ
KqInTzc/dsiB8Bi9upzv5v0ULn/B/qqRBa/7HvKD5AbeqlXGPBOXDv1oOT0Yb3a/
qHlFbAMmnqO6MAoGCCqGSM49BAMCA0kAMEYCIQCd/HAwKKGraWn7yHuPM2UFMFGk
CH8dfgAoeZPh9avR7AIhAIGE0WSxVoTTrXIdGUUTd8od2y4RTjGDMrgJE0PplsAs
-----END CERTIFICATE-----
`;
const EXPIRED_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgxHlLvCZzF4YAB+NO
GIvWBB0mr9F0dfep9bOMk1erI2ChRANCAAQVQz78pHWZKqInTzc/dsiB8Bi9upzv
5v0ULn/B/qqRBa/7HvKD5AbeqlXGPBOXDv1oOT0Yb3a/qHlFbAMmnqO6
-----END PRIVATE KEY-----
`;

function writeFile(name: string, content: string, mode = 0o600): string {
  const path = join(dir, name);
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, content);
  chmodSync(path, mode);
  return path;
}

writeFile('tls/ok.crt', TEST_CERT);
writeFile('tls/ok.key', TEST_KEY);
writeFile('tls/expired.crt', EXPIRED_CERT);
writeFile('tls/expired.key', EXPIRED_KEY);
writeFile('tls/other.key', generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
writeFile('tls/world-readable.key', TEST_KEY, 0o644);
writeFile('tls/not-pem.txt', 'hello\n');
writeFile('ca.pem', TEST_CERT);
writeFile('a-file', 'x');

describe('parseConfig: the minimal file', () => {
  it('works exactly as written, with every default filled in', () => {
    const { config, warnings } = parse(MINIMAL);
    const expected: AirlockConfig = {
      listen: { host: '127.0.0.1', port: 6432 },
      upstream: {
        host: '127.0.0.1',
        port: 5432,
        user: 'airlock',
        password: UPSTREAM_PW,
        database: 'app',
        sslmode: 'prefer',
        sslrootcert: null,
      },
      stateDir: join(dir, '.airlock'),
      tls: null,
      agents: [
        {
          name: 'claude',
          password: AGENT_PW,
          profile: 'read-only',
          groups: [],
          writeLimits: { maxRows: 100, requireWhere: true, rowsPerHour: 1000, writesPerMinute: 60 },
          database: 'app',
          readRole: 'airlock_read_claude',
          maxSessions: 20,
          writeRole: 'airlock_write_claude',
        },
      ],
      rules: [],
      trustedFunctions: [],
      canaryTables: [],
      undo: { optionalTables: [] },
      admin: { listen: { host: '127.0.0.1', port: 6433 }, totpSecret: null, tls: null },
      mcp: null,
      freezeWindows: [],
      tripwire: { refusals: 3, windowSeconds: 600, webhook: null },
      approvals: { waitSeconds: 300, expireSeconds: 3600, webhook: null },
      audit: { flushMs: 5, checkpoint: null },
      limits: {
        maxMessageBytes: 64 * 1024 * 1024,
        maxClients: 200,
        maxPendingLogins: 64,
        loginTimeoutMs: 5000,
        connectTimeoutMs: 5000,
        statementTimeoutMs: 60_000,
        lockTimeoutMs: 10_000,
        idleInTransactionMs: 60_000,
        maxStatementBytes: 1024 * 1024,
        classifyTimeoutMs: 2000,
        classifierWorkers: 2,
        classifierMemoryBytes: 256 * 1024 * 1024,
        statementCacheBytes: 64 * 1024 * 1024,
        maxMemoryBytes: 1024 * 1024 * 1024,
      },
    };
    expect(config).toEqual(expected);
    expect(warnings).toEqual([]);
  });

  it('resolves session limits: agents[].max_sessions over limits.max_sessions_per_agent', () => {
    const text =
      MINIMAL +
      '  - name: ops\n    password: ${CLAUDE_DB_PASSWORD}\n    max_sessions: 3\n' +
      'limits:\n  max_sessions_per_agent: 7\n  max_pending_logins: 10\n  login_timeout_ms: 1500\n';
    const { config } = parse(text);
    expect(config.agents.map((a) => [a.name, a.maxSessions])).toEqual([
      ['claude', 7],
      ['ops', 3],
    ]);
    expect(config.limits).toMatchObject({ maxPendingLogins: 10, loginTimeoutMs: 1500 });
    expect(problemsOf(MINIMAL + '    max_sessions: 0\n').join('\n')).toMatch(/agents\[0\]\.max_sessions/);
  });

  it('defaults listen when it is left out', () => {
    expect(parse(MINIMAL.replace('listen: 127.0.0.1:6432\n', () => '')).config.listen).toEqual({ host: '127.0.0.1', port: 6432 });
  });
});

describe('parseConfig: valid files', () => {
  const cases: [string, string, (c: AirlockConfig) => unknown, unknown][] = [
    ['IPv6 listen', 'listen: "[::1]:7000"\n' + withAgent(''), (c) => c.listen, { host: '::1', port: 7000 }],
    ['absolute state_dir', withAgent('', 'state_dir: /var/lib/airlock\n'), (c) => c.stateDir, '/var/lib/airlock'],
    ['mcp.listen', withAgent('', 'mcp: { listen: 127.0.0.1:6434 }\n'), (c) => c.mcp, { listen: { host: '127.0.0.1', port: 6434 }, approvalWaitSeconds: 15 }],
    ['relative state_dir', withAgent('', 'state_dir: data/state\n'), (c) => c.stateDir, join(dir, 'data/state')],
    ['explicit database', withAgent('    database: analytics\n'), (c) => c.agents[0]?.database, 'analytics'],
    ['explicit read_role', withAgent('    read_role: ro_claude\n'), (c) => c.agents[0]?.readRole, 'ro_claude'],
    ['explicit write_role', withAgent('    write_role: rw_claude\n'), (c) => c.agents[0]?.writeRole, 'rw_claude'],
    [
      'derived read roles',
      'upstream: postgres://airlock@h/app\nagents:\n  - { name: Cursor-Bot, password: long-enough-password }\n  - { name: a$b, password: long-enough-password }\n',
      (c) => c.agents.map((a) => a.readRole),
      ['airlock_read_cursor_bot', 'airlock_read_a_b'],
    ],
    [
      'audit and limits',
      withAgent('', 'audit: { flush_ms: 1000 }\nlimits: { max_message_bytes: 1024, max_clients: 1, connect_timeout_ms: 100 }\n'),
      (c) => [c.audit, c.limits],
      [{ flushMs: 1000, checkpoint: null }, { maxMessageBytes: 1024, maxClients: 1, maxPendingLogins: 64, loginTimeoutMs: 5000, connectTimeoutMs: 100, statementTimeoutMs: 60_000, lockTimeoutMs: 10_000, idleInTransactionMs: 60_000, maxStatementBytes: 1024 * 1024, classifyTimeoutMs: 2000, classifierWorkers: 2, classifierMemoryBytes: 256 * 1024 * 1024, statementCacheBytes: 64 * 1024 * 1024, maxMemoryBytes: 1024 * 1024 * 1024 }],
    ],
    [
      'canary tables and a tripwire with a Slack webhook',
      withAgent('', 'canary_tables: [public.payroll, "honeypot.*"]\ntripwire:\n  refusals: 5\n  webhook:\n    url: https://hooks.example.com/x\n    format: slack\n'),
      (c) => [c.canaryTables, c.tripwire],
      [['public.payroll', 'honeypot.*'], { refusals: 5, windowSeconds: 600, webhook: { url: 'https://hooks.example.com/x', format: 'slack' } }],
    ],
    [
      'freeze windows, weekly and a date range',
      withAgent(
        '',
        'freeze_windows:\n  - name: weekend\n    reason: no changes at weekends\n    weekly: { days: [sat, sun], start: "00:00", end: "23:59", timezone: Europe/Berlin }\n  - name: release\n    reason: release freeze\n    agents: [claude]\n    from: 2026-12-20T00:00:00+01:00\n    to: 2027-01-05T00:00:00+01:00\n',
      ),
      (c) => c.freezeWindows,
      [
        { name: 'weekend', reason: 'no changes at weekends', agents: null, weekly: { days: ['sat', 'sun'], start: '00:00', end: '23:59', timezone: 'Europe/Berlin' } },
        { name: 'release', reason: 'release freeze', agents: ['claude'], from: '2026-12-20T00:00:00+01:00', to: '2027-01-05T00:00:00+01:00' },
      ],
    ],
    [
      'audit checkpoints, resolved against the config file',
      withAgent('', 'audit:\n  checkpoint_file: ../outside/audit.checkpoint\n  checkpoint_key: a-long-enough-secret-key\n'),
      (c) => c.audit.checkpoint,
      { file: resolve(dir, '../outside/audit.checkpoint'), key: 'a-long-enough-secret-key' },
    ],
    [
      'classification limits',
      withAgent('', 'limits:\n  max_statement_bytes: 65536\n  classify_timeout_ms: 500\n  classifier_workers: 4\n  classifier_memory_bytes: 134217728\n  statement_cache_bytes: 0\n'),
      (c) => [c.limits.maxStatementBytes, c.limits.classifyTimeoutMs, c.limits.classifierWorkers, c.limits.classifierMemoryBytes, c.limits.statementCacheBytes],
      [65536, 500, 4, 134217728, 0],
    ],
    [
      'partial limits keep the other defaults',
      withAgent('', 'limits:\n  max_clients: 20\n'),
      (c) => c.limits,
      { maxMessageBytes: 64 * 1024 * 1024, maxClients: 20, maxPendingLogins: 64, loginTimeoutMs: 5000, connectTimeoutMs: 5000, statementTimeoutMs: 60_000, lockTimeoutMs: 10_000, idleInTransactionMs: 60_000, maxStatementBytes: 1024 * 1024, classifyTimeoutMs: 2000, classifierWorkers: 2, classifierMemoryBytes: 256 * 1024 * 1024, statementCacheBytes: 64 * 1024 * 1024, maxMemoryBytes: 1024 * 1024 * 1024 },
    ],
    [
      'upstream with every part',
      'upstream: postgresql://svc%40corp:p%40ss@[::1]:6543/my%20db?sslmode=verify-full&sslrootcert=ca.pem\nagents: [{ name: x, password: long-enough-password }]\n',
      (c) => c.upstream,
      { host: '::1', port: 6543, user: 'svc@corp', password: 'p@ss', database: 'my db', sslmode: 'verify-full', sslrootcert: join(dir, 'ca.pem') },
    ],
    [
      'tls files loaded as PEM',
      withAgent('', 'tls:\n  cert: tls/ok.crt\n  key: tls/ok.key\n'),
      (c) => c.tls,
      { cert: TEST_CERT, key: TEST_KEY },
    ],
    [
      'admin.tls files loaded as PEM',
      withAgent('', 'admin:\n  tls:\n    cert: tls/ok.crt\n    key: tls/ok.key\n'),
      (c) => c.admin.tls,
      { cert: TEST_CERT, key: TEST_KEY },
    ],
    [
      'YAML anchors and aliases',
      'upstream: postgres://airlock@h/app\nagents:\n  - &a { name: one, password: long-enough-password }\n  - { name: two, password: long-enough-password }\n',
      (c) => c.agents.length,
      2,
    ],
  ];
  it.each(cases)('%s', (_, text, pick, expected) => {
    expect(pick(parse(text).config)).toEqual(expected);
  });
});

describe('parseConfig: invalid files', () => {
  // [what, file, key path, what the message must say]
  const cases: [string, string, string, string][] = [
    ['profile typo', withAgent('    profile: read-wirte\n'), 'agents[0].profile', 'must be one of: read-only, read-write, writes-need-approval (got "read-wirte")'],
    ['missing upstream', 'agents: [{ name: x, password: long-enough-password }]\n', 'upstream', 'is required'],
    ['missing agents', 'upstream: postgres://airlock@h/app\n', 'agents', 'is required'],
    ['no agents', 'upstream: postgres://airlock@h/app\nagents: []\n', 'agents', 'must list at least one agent'],
    ['agents not a list', 'upstream: postgres://airlock@h/app\nagents: claude\n', 'agents', 'must be a list (got text)'],
    ['agent name', withAgent('').replace('name: claude', () => 'name: 9lives'), 'agents[0].name', 'must be a PostgreSQL user name'],
    ['agent name too long', withAgent('').replace('name: claude', () => `name: ${'n'.repeat(64)}`), 'agents[0].name', 'must be a PostgreSQL user name'],
    ['agent password short', withAgent('').replace('long-enough-password', () => 'seven77'), 'agents[0].password', 'must be at least 8 characters long'],
    ['agent password a number', withAgent('').replace('long-enough-password', () => '12345678'), 'agents[0].password', 'must be text (got a number; put the value in quotes)'],
    ['agent password missing', 'upstream: postgres://airlock@h/app\nagents:\n  - name: x\n', 'agents[0].password', 'is required'],
    ['empty value', withAgent('    database:\n'), 'agents[0].database', 'must be text (got an empty value)'],
    ['empty database', withAgent('    database: ""\n'), 'agents[0].database', 'must not be empty'],
    ['read_role upper case', withAgent('    read_role: ReadRole\n'), 'agents[0].read_role', 'must be a lower-case PostgreSQL role name'],
    ['read_role pg_', withAgent('    read_role: pg_reader\n'), 'agents[0].read_role', 'must not start with pg_'],
    ['read_role public', withAgent('    read_role: public\n'), 'agents[0].read_role', 'a name PostgreSQL reserves'],
    ['read_role = service account', withAgent('    read_role: airlock\n'), 'agents[0].read_role', "airlock is the upstream service account's user"],
    [
      'derived read_role = service account',
      'upstream: postgres://airlock_read_x@h/app\nagents: [{ name: x, password: long-enough-password }]\n',
      'agents[0].read_role',
      'airlock_read_x (derived from the name; set read_role to choose another) is the upstream service account',
    ],
    [
      'duplicate names, any case',
      'upstream: postgres://airlock@h/app\nagents:\n  - { name: claude, password: long-enough-password }\n  - { name: Claude, password: long-enough-password, read_role: other }\n',
      'agents[1].name',
      '"Claude" is already the name of agents[0] (names are compared without regard to case)',
    ],
    [
      'duplicate derived read roles',
      'upstream: postgres://airlock@h/app\nagents:\n  - { name: a-b, password: long-enough-password }\n  - { name: a_b, password: long-enough-password }\n',
      'agents[1].read_role',
      'airlock_read_a_b (derived from the name; set read_role to choose another) is already the read role of agents[0]',
    ],
    [
      'duplicate explicit read roles',
      'upstream: postgres://airlock@h/app\nagents:\n  - { name: a, password: long-enough-password, read_role: r }\n  - { name: b, password: long-enough-password, read_role: r }\n',
      'agents[1].read_role',
      'r is already the read role of agents[0]',
    ],
    ['write_role upper case', withAgent('    write_role: WriteRole\n'), 'agents[0].write_role', 'must be a lower-case PostgreSQL role name'],
    ['write_role pg_', withAgent('    write_role: pg_writer\n'), 'agents[0].write_role', 'must not start with pg_'],
    ['write_role = service account', withAgent('    write_role: airlock\n'), 'agents[0].write_role', "airlock is the upstream service account's user"],
    ['write_role = read_role', withAgent('    read_role: r\n    write_role: r\n'), 'agents[0].write_role', "r is also this agent's read role"],
    [
      'write_role = another agent read role',
      'upstream: postgres://airlock@h/app\nagents:\n  - { name: a, password: long-enough-password, read_role: r }\n  - { name: b, password: long-enough-password, write_role: r }\n',
      'agents[1].write_role',
      'r is already the read role of agents[0]',
    ],
    [
      'duplicate derived write roles',
      'upstream: postgres://airlock@h/app\nagents:\n  - { name: a-b, password: long-enough-password, read_role: r1 }\n  - { name: a_b, password: long-enough-password, read_role: r2 }\n',
      'agents[1].write_role',
      'airlock_write_a_b (derived from the name; set write_role to choose another) is already the write role of agents[0]',
    ],
    ['unknown top-level key', withAgent('', 'stat_dir: x\n'), 'stat_dir', 'is not a known key (did you mean state_dir?)'],
    ['unknown agent key', withAgent('    pasword: x\n'), 'agents[0].pasword', 'is not a known key (did you mean password?)'],
    ['camelCase key', withAgent('', 'audit: { flushMs: 5 }\n'), 'audit.flushMs', 'is not a known key (did you mean flush_ms?)'],
    ['odd unknown key', withAgent('', '"x y": 1\n'), '["x y"]', 'is not a known key'],
    ['a freeze window in an unknown time zone', withAgent('', 'freeze_windows:\n  - { name: w, reason: r, weekly: { days: [mon], start: "09:00", end: "17:00", timezone: Mars/Olympus } }\n'), 'freeze_windows[0].weekly.timezone', 'not a time zone'],
    ['a freeze window for an unknown agent', withAgent('', 'freeze_windows:\n  - { name: w, reason: r, agents: [nobody], from: "2026-01-01T00:00:00Z", to: "2026-01-02T00:00:00Z" }\n'), 'freeze_windows[0].agents', 'not an agent'],
    ['a date range that ends before it starts', withAgent('', 'freeze_windows:\n  - { name: w, reason: r, from: "2026-01-02T00:00:00Z", to: "2026-01-01T00:00:00Z" }\n'), 'freeze_windows[0].to', 'not after from'],
    ['an unqualified canary table', withAgent('', 'canary_tables: [payroll]\n'), 'canary_tables[0]', 'schema-qualified'],
    ['a webhook that is not http', withAgent('', 'tripwire:\n  webhook:\n    url: ftp://x/y\n'), 'tripwire.webhook.url', 'http:// or https://'],
    ['an unknown webhook format', withAgent('', 'tripwire:\n  webhook:\n    url: https://x/y\n    format: teams\n'), 'tripwire.webhook.format', 'must be one of'],
    ['a checkpoint file without its key', withAgent('', 'audit:\n  checkpoint_file: ../cp\n'), 'audit.checkpoint_key', 'go together'],
    ['a checkpoint key too short', withAgent('', 'audit:\n  checkpoint_file: ../cp\n  checkpoint_key: short\n'), 'audit.checkpoint_key', 'at least 16 characters'],
    ['a checkpoint inside state_dir', withAgent('', 'audit:\n  checkpoint_file: .airlock/cp\n  checkpoint_key: a-long-enough-secret-key\n'), 'audit.checkpoint_file', 'inside state_dir'],
    ['listen without port', withAgent('', 'listen: localhost\n'), 'listen', 'must be host:port'],
    ['listen bad port', withAgent('', 'listen: 127.0.0.1:70000\n'), 'listen', 'the port must be a number from 0 to 65535 (got "70000")'],
    ['listen bare IPv6', withAgent('', 'listen: "::1:6432"\n'), 'listen', 'write it in brackets'],
    ['listen a number', withAgent('', 'listen: 6432\n'), 'listen', 'must be text (got a number; put the value in quotes)'],
    ['upstream scheme', 'upstream: mysql://airlock@h/app\nagents: [{ name: x, password: long-enough-password }]\n', 'upstream', 'must use the postgres:// or postgresql:// scheme'],
    ['upstream no database', 'upstream: postgres://airlock@h\nagents: [{ name: x, password: long-enough-password }]\n', 'upstream', 'must name the database'],
    ['upstream unknown parameter', 'upstream: postgres://airlock@h/app?foo=bar\nagents: [{ name: x, password: long-enough-password }]\n', 'upstream', 'has the query parameter "foo"'],
    ['upstream sslmode', 'upstream: postgres://airlock@h/app?sslmode=allow\nagents: [{ name: x, password: long-enough-password }]\n', 'upstream', 'sslmode must be one of'],
    ['sslrootcert missing', 'upstream: postgres://airlock@h/app?sslmode=verify-full&sslrootcert=nope.pem\nagents: [{ name: x, password: long-enough-password }]\n', 'upstream', `the sslrootcert file ${join(dir, 'nope.pem')} does not exist`],
    ['flush_ms 0', withAgent('', 'audit: { flush_ms: 0 }\n'), 'audit.flush_ms', 'must be at least 1 (got 0)'],
    ['flush_ms 1001', withAgent('', 'audit: { flush_ms: 1001 }\n'), 'audit.flush_ms', 'must be at most 1000 (got 1001)'],
    ['flush_ms fraction', withAgent('', 'audit: { flush_ms: 2.5 }\n'), 'audit.flush_ms', 'must be a whole number (got 2.5)'],
    ['flush_ms as text', withAgent('', 'audit: { flush_ms: "5" }\n'), 'audit.flush_ms', 'must be a number (got text)'],
    ['audit empty', withAgent('', 'audit:\n'), 'audit', 'must be a mapping of keys to values (got an empty value)'],
    ['max_message_bytes small', withAgent('', 'limits: { max_message_bytes: 512 }\n'), 'limits.max_message_bytes', 'must be at least 1024 (got 512)'],
    ['max_clients big', withAgent('', 'limits: { max_clients: 10001 }\n'), 'limits.max_clients', 'must be at most 10000 (got 10001)'],
    ['connect_timeout_ms small', withAgent('', 'limits: { connect_timeout_ms: 10 }\n'), 'limits.connect_timeout_ms', 'must be at least 100 (got 10)'],
    ['idle_in_transaction_ms negative', withAgent('', 'limits: { idle_in_transaction_ms: -1 }\n'), 'limits.idle_in_transaction_ms', 'must be at least 0 (got -1)'],
    ['max_statement_bytes small', withAgent('', 'limits: { max_statement_bytes: 10 }\n'), 'limits.max_statement_bytes', 'must be at least 1024 (got 10)'],
    ['classifier_workers zero', withAgent('', 'limits: { classifier_workers: 0 }\n'), 'limits.classifier_workers', 'must be at least 1 (got 0)'],
    ['state_dir a file', withAgent('', 'state_dir: a-file\n'), 'state_dir', `${join(dir, 'a-file')} exists and is not a directory`],
    ['state_dir empty', withAgent('', 'state_dir: ""\n'), 'state_dir', 'must not be empty'],
    ['tls without key', withAgent('', 'tls: { cert: tls/ok.crt }\n'), 'tls.key', 'is required'],
    ['tls cert missing', withAgent('', 'tls: { cert: tls/nope.crt, key: tls/ok.key }\n'), 'tls.cert', `the certificate file ${join(dir, 'tls/nope.crt')} does not exist`],
    ['tls cert a directory', withAgent('', 'tls: { cert: tls, key: tls/ok.key }\n'), 'tls.cert', `the certificate file ${join(dir, 'tls')} is a directory, not a file`],
    ['tls cert not PEM', withAgent('', 'tls: { cert: tls/not-pem.txt, key: tls/ok.key }\n'), 'tls.cert', 'does not hold a PEM certificate'],
    ['tls key not PEM', withAgent('', 'tls: { cert: tls/ok.crt, key: tls/not-pem.txt }\n'), 'tls.key', 'does not hold an unencrypted PEM private key'],
    ['admin.tls cert missing', withAgent('', 'admin:\n  tls: { cert: tls/nope.crt, key: tls/ok.key }\n'), 'admin.tls.cert', `the certificate file ${join(dir, 'tls/nope.crt')} does not exist`],
    ['admin.tls key of another cert', withAgent('', 'admin:\n  tls: { cert: tls/ok.crt, key: tls/other.key }\n'), 'admin.tls.key', 'is not the private key of the certificate'],
    ['tls key of another cert', withAgent('', 'tls: { cert: tls/ok.crt, key: tls/other.key }\n'), 'tls.key', 'is not the private key of the certificate'],
    ['root a list', '- a\n- b\n', '(top level)', 'must be a mapping of keys to values (got a list)'],
    ['empty file', '', '(top level)', 'the file holds no settings'],
    ['comments only', '# nothing\n', '(top level)', 'the file holds no settings'],
    ['self-referencing alias', withAgent('', 'limits: &l { max_clients: *l }\n'), 'limits.max_clients', 'contains itself through a YAML alias'],
  ];
  it.each(cases)('%s', (_, text, path, message) => {
    const problems = problemsOf(text);
    const prefix = `airlock.yaml: ${path}: `;
    const match = problems.find((p) => p.startsWith(prefix));
    expect(match, `no problem at ${path} in:\n${problems.join('\n')}`).toBeDefined();
    expect(match?.slice(prefix.length)).toContain(message);
  });

  it('reports every problem at once, in file order', () => {
    const text = `listen: localhost
upstream: postgres://airlock@h/app?sslmode=nope
stat_dir: x
agents:
  - name: claude
    password: \${MISSING}
    profile: read-wirte
  - name: Claude
    password: seven77
limits: { max_clients: 0 }
`;
    expect(problemsOf(text)).toEqual([
      'airlock.yaml: listen: must be host:port, as in 127.0.0.1:6432 or [::1]:6432 (got "localhost")',
      'airlock.yaml: upstream: sslmode must be one of: disable, prefer, require, verify-ca, verify-full (got "nope")',
      'airlock.yaml: stat_dir: is not a known key (did you mean state_dir?)',
      'airlock.yaml: agents[0].password: environment variable MISSING is not set',
      'airlock.yaml: agents[0].profile: must be one of: read-only, read-write, writes-need-approval (got "read-wirte")',
      'airlock.yaml: agents[1].password: must be at least 8 characters long',
      'airlock.yaml: limits.max_clients: must be at least 1 (got 0)',
    ]);
  });

  it('checks names and read roles even when another section has problems', () => {
    const text = `upstream: postgres://airlock@h/app
agents:
  - { name: claude, password: long-enough-password }
  - { name: CLAUDE, password: long-enough-password, read_role: airlock }
limits: { max_clients: 0 }
`;
    expect(problemsOf(text)).toEqual([
      'airlock.yaml: agents[1].name: "CLAUDE" is already the name of agents[0] (names are compared without regard to case).',
      "airlock.yaml: agents[1].read_role: airlock is the upstream service account's user; reads must run as a separate role without write grants.",
      'airlock.yaml: limits.max_clients: must be at least 1 (got 0)',
    ]);
  });

  it.each([
    ['a: [1\n', 'airlock.yaml:2:1: YAML syntax: '],
    ['upstream: x\nupstream: y\n', 'airlock.yaml:2:1: YAML syntax: Map keys must be unique'],
    ['agents:\n  - name: "x\n', 'airlock.yaml:3:1: YAML syntax: Missing closing "quote'],
    ['a: b\n---\nc: d\n', 'airlock.yaml:2:1: YAML syntax: '],
  ])('reports YAML syntax errors with line and column: %j', (text, start) => {
    const problems = problemsOf(text);
    expect(problems[0]).toMatch(new RegExp(`^${start.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  });

  it('makes a readable error message', () => {
    const error = new ConfigError(['f: a: one', 'f: b: two']);
    expect(error.message).toBe('The configuration has 2 problems:\n  f: a: one\n  f: b: two');
    expect(new ConfigError(['f: a: one']).message).toBe('The configuration has a problem:\n  f: a: one');
    expect(error.name).toBe('ConfigError');
    expect(error).toBeInstanceOf(Error);
  });
});

describe('environment interpolation', () => {
  const agentPassword = (password: string, env: Record<string, string | undefined>) =>
    parse(withAgent('').replace('long-enough-password', () => password), env).config.agents[0]?.password;

  it('keeps a value that looks like YAML a plain string', () => {
    const sneaky = 'x\nfoo: bar\nprofile: read-write';
    const { config } = parse(MINIMAL, { ...ENV, CLAUDE_DB_PASSWORD: sneaky });
    expect(config.agents).toHaveLength(1);
    expect(config.agents[0]?.password).toBe(sneaky);
    expect(config.agents[0]?.profile).toBe('read-only');
  });

  it.each([
    ['${A}', { A: 'from-env-value' }, 'from-env-value'],
    ['pre-${A}-${B}-post', { A: 'aa', B: 'bb' }, 'pre-aa-bb-post'],
    ['lit$${A}eral', { A: 'not used' }, 'lit${A}eral'],
    ['$$${A}xxxx', { A: 'not used' }, '$${A}xxxx'],
    ['dollar$A$-sign', {}, 'dollar$A$-sign'],
    ['${A}', { A: '${B}-not-expanded' }, '${B}-not-expanded'],
    ['${_a1}', { _a1: 'underscored' }, 'underscored'],
  ])('%s → %s', (written, env, expected) => {
    expect(agentPassword(written, env)).toBe(expected);
  });

  it.each([
    [MINIMAL, { AIRLOCK_UPSTREAM_PASSWORD: UPSTREAM_PW }, 'airlock.yaml: agents[0].password: environment variable CLAUDE_DB_PASSWORD is not set'],
    [MINIMAL, { ...ENV, AIRLOCK_UPSTREAM_PASSWORD: undefined }, 'airlock.yaml: upstream: environment variable AIRLOCK_UPSTREAM_PASSWORD is not set'],
    [MINIMAL, { ...ENV, CLAUDE_DB_PASSWORD: '' }, 'airlock.yaml: agents[0].password: environment variable CLAUDE_DB_PASSWORD is set but empty'],
    [withAgent('', 'listen: ${LISTEN}\n'), {}, 'airlock.yaml: listen: environment variable LISTEN is not set'],
  ])('names the key and the variable when one is missing (%#)', (text, env, problem) => {
    // Only that problem: the ${...} text left in place must not draw schema complaints too.
    expect(problemsOf(text, env)).toEqual([problem]);
  });

  it('reports every missing variable', () => {
    expect(problemsOf(MINIMAL, {})).toEqual([
      'airlock.yaml: upstream: environment variable AIRLOCK_UPSTREAM_PASSWORD is not set',
      'airlock.yaml: agents[0].password: environment variable CLAUDE_DB_PASSWORD is not set',
    ]);
  });

  it.each([
    ['abc${unterminated', 'has a ${ without a closing } (at character 4)'],
    ['abc${1X}defghij', 'has an invalid variable reference at character 4'],
    ['abc${A:-x}defghij', 'defaults (${VAR:-x}) are not supported'],
    ['abc${}defghij', 'has an invalid variable reference'],
  ])('refuses a malformed reference: %s', (written, message) => {
    const problems = problemsOf(withAgent('').replace('long-enough-password', () => `'${written}'`), { A: 'x' });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^airlock\.yaml: agents\[0\]\.password: /);
    expect(problems[0]).toContain(message);
  });

  it('does not substitute in keys', () => {
    expect(problemsOf(withAgent('', '${KEY}: 1\n'), { KEY: 'listen' })).toEqual([
      'airlock.yaml: ["${KEY}"]: is not a known key (known keys here: listen, upstream, state_dir, tls, agents, trusted_functions, write_limits, rules, canary_tables, undo, admin, mcp, freeze_windows, tripwire, approvals, audit, limits)',
    ]);
  });

  it('substitutes in any string value', () => {
    const text = `listen: \${HOST}:\${PORT}
upstream: postgres://airlock@\${DB_HOST}/\${DB_NAME}
state_dir: \${STATE}
agents:
  - name: \${NAME}
    password: long-enough-password
`;
    const { config } = parse(text, { HOST: '0.0.0.0', PORT: '7000', DB_HOST: 'db.internal', DB_NAME: 'prod', STATE: '/srv/airlock', NAME: 'codex' });
    expect(config.listen).toEqual({ host: '0.0.0.0', port: 7000 });
    expect([config.upstream.host, config.upstream.database]).toEqual(['db.internal', 'prod']);
    expect(config.stateDir).toBe('/srv/airlock');
    expect(config.agents[0]?.name).toBe('codex');
  });

  describe('in the upstream URL', () => {
    const agents = 'agents: [{ name: x, password: long-enough-password }]\n';
    const upstream = (url: string, env: Record<string, string>) => parse(`upstream: ${url}\n${agents}`, env).config.upstream;

    it.each(['p@ss/w:rd', 'a#b?c', '100%', 'with space', 'ünï©ødé', 'x\nfoo: bar', "it's \"quoted\""])(
      'percent-encodes a password from the environment: %j',
      (password) => {
        expect(upstream('postgres://airlock:${PW}@db/app', { PW: password })).toMatchObject({ host: 'db', user: 'airlock', password, database: 'app' });
      },
    );

    it('percent-encodes a user from the environment', () => {
      expect(upstream('postgres://${U}:${PW}@db/app', { U: 'svc@corp', PW: 'a:b' })).toMatchObject({ user: 'svc@corp', password: 'a:b' });
    });

    it('inserts variables elsewhere in the URL as they are', () => {
      expect(upstream('postgres://airlock@${HOSTPORT}/${DB}?sslmode=${MODE}', { HOSTPORT: '[::1]:6000', DB: 'my%20db', MODE: 'require' })).toMatchObject({
        host: '::1',
        port: 6000,
        database: 'my db',
        sslmode: 'require',
      });
    });

    it('takes a URL that is one variable whole, already encoded', () => {
      expect(upstream('${DATABASE_URL}', { DATABASE_URL: 'postgres://svc:p%40ss@db:6000/app' })).toMatchObject({
        user: 'svc',
        password: 'p@ss',
        host: 'db',
        port: 6000,
      });
    });

    it('decodes a password written in the URL itself', () => {
      expect(upstream("'postgres://airlock:p%40ss$${x}@db/app'", {})).toMatchObject({ password: 'p@ss${x}' });
    });
  });
});

describe('profiles, groups, write limits and rules', () => {
  /** Two agents (claude in groups bots and ops, cursor in bots) and `extra` top-level lines. */
  const twoAgents = (extra: string, claudeLines = '') =>
    'upstream: postgres://airlock@127.0.0.1/app\n' +
    'agents:\n' +
    `  - name: claude\n    password: long-enough-password\n    groups: [bots, ops]\n${claudeLines}` +
    '  - name: cursor\n    password: long-enough-password\n    profile: read-write\n    groups: [bots]\n' +
    extra;

  /** The issue's example, verbatim. */
  const ISSUE = `agents:
  - name: claude
    password: \${CLAUDE_DB_PASSWORD}
    profile: read-only
rules:
  - { agents: [claude], kinds: [insert, update], tables: [public.tasks], decision: allow }
  - { tables: [public.companies], decision: approve }
  - { kinds: [ddl], decision: deny }
  - { kinds: [select], tables: [public.secrets], decision: deny }
`;

  it("reads the issue's example: aliases expanded, patterns as written, each rule with its index", () => {
    const { config, warnings } = parse(`upstream: postgres://airlock@127.0.0.1/app\n${ISSUE}`);
    expect(warnings).toEqual([]);
    expect(config.rules).toEqual([
      { index: 0, agents: ['claude'], kinds: ['insert', 'update'], tables: ['public.tasks'], decision: 'allow', note: null },
      { index: 1, agents: null, kinds: null, tables: ['public.companies'], decision: 'approve', note: null },
      { index: 2, agents: null, kinds: ['create', 'alter', 'drop'], tables: null, decision: 'deny', note: null },
      { index: 3, agents: null, kinds: ['select'], tables: ['public.secrets'], decision: 'deny', note: null },
    ]);
  });

  it('expands write and ddl, keeping the order written and each kind once', () => {
    const { config } = parse(twoAgents('rules:\n  - { kinds: [update, write, ddl, drop], decision: deny, note: frozen schema }\n'));
    expect(config.rules[0]).toMatchObject({ kinds: ['update', 'insert', 'delete', 'merge', 'create', 'alter', 'drop'], note: 'frozen schema' });
  });

  it('accepts every profile', () => {
    for (const profile of ['read-only', 'read-write', 'writes-need-approval']) {
      expect(parse(withAgent(`    profile: ${profile}\n`)).config.agents[0]?.profile).toBe(profile);
    }
  });

  it('resolves write limits: the agent over the top level over the defaults', () => {
    const { config } = parse(
      twoAgents('write_limits:\n  max_rows: 500\n  require_where: false\n', '    write_limits: { max_rows: 10, writes_per_minute: 5 }\n'),
    );
    expect(config.agents.map((a) => a.writeLimits)).toEqual([
      { maxRows: 10, requireWhere: false, rowsPerHour: 1000, writesPerMinute: 5 },
      { maxRows: 500, requireWhere: false, rowsPerHour: 1000, writesPerMinute: 60 },
    ]);
    expect(config.agents.map((a) => a.groups)).toEqual([['bots', 'ops'], ['bots']]);
  });

  it('lets rules name agents and groups, in any case', () => {
    const { config } = parse(twoAgents('rules:\n  - { agents: [BOTS, Claude], kinds: [insert], decision: allow }\n'));
    expect(config.rules[0]?.agents).toEqual(['BOTS', 'Claude']);
  });

  it('warns about a rule that an earlier rule with the same decision already decides', () => {
    const { warnings } = parse(
      twoAgents('rules:\n  - { agents: [bots], kinds: [delete], decision: deny }\n  - { agents: [cursor], kinds: [delete], tables: [public.tasks], decision: deny }\n'),
    );
    expect(warnings).toEqual([
      "airlock.yaml: rules[1]: never applies; rules[0] already decides it (deny): it comes first and covers all of this rule's agents, kinds and tables.",
    ]);
  });

  // [what, extra lines, key path, what the message must say]
  const invalid: [string, string, string, string][] = [
    ['an unknown agent in a rule', 'rules:\n  - { agents: [claud], decision: deny }\n', 'rules[0].agents[0]', 'names "claud", which is neither an agent nor a group in this file (agents: claude, cursor; groups: bots, ops)'],
    ['an unknown kind', 'rules:\n  - { kinds: [insert, upsert], decision: allow }\n', 'rules[0].kinds[1]', 'must be one of: select, insert, update, delete, merge, truncate, create, alter, drop, write, ddl (got "upsert")'],
    ['an unknown decision', 'rules:\n  - { decision: maybe }\n', 'rules[0].decision', 'must be one of: allow, deny, approve (got "maybe")'],
    ['a rule without a decision', 'rules:\n  - { kinds: [insert] }\n', 'rules[0].decision', 'is required'],
    ['an unqualified table', 'rules:\n  - { tables: [tasks], decision: allow }\n', 'rules[0].tables[0]', 'must be a schema-qualified table name or pattern'],
    ['an empty tables list', 'rules:\n  - { tables: [], decision: allow }\n', 'rules[0].tables', 'leave it out for any relation'],
    ['an empty agents list', 'rules:\n  - { agents: [], decision: allow }\n', 'rules[0].agents', 'leave it out for every agent'],
    ['an unknown rule key', 'rules:\n  - { table: [public.t], decision: allow }\n', 'rules[0].table', 'did you mean tables?'],
    ['allow_unrecoverable on a deny rule', 'rules:\n  - { kinds: [drop], decision: deny, allow_unrecoverable: true }\n', 'rules[0].allow_unrecoverable', 'allow_unrecoverable goes only on a rule with decision: allow'],
    [
      'identical selectors that contradict',
      'rules:\n  - { kinds: [insert], tables: [public.tasks], decision: allow }\n  - { kinds: [insert], tables: [public.tasks], decision: deny }\n',
      'rules[1]',
      'can never apply: rules[0] comes first, covers all of its agents, kinds and tables, and decides allow where this rule says deny. Move this rule above rules[0], or narrow rules[0].',
    ],
    [
      'an earlier rule without tables or kinds',
      'rules:\n  - { agents: [bots], decision: deny }\n  - { agents: [claude], kinds: [update], tables: [public.tasks], decision: allow }\n',
      'rules[1]',
      'can never apply: rules[0] comes first',
    ],
    ['max_rows 0', 'write_limits: { max_rows: 0 }\n', 'write_limits.max_rows', 'must be at least 1 (got 0)'],
    ['rows_per_hour a fraction', 'write_limits: { rows_per_hour: 1.5 }\n', 'write_limits.rows_per_hour', 'must be a whole number'],
    ['require_where as text', 'write_limits: { require_where: "no" }\n', 'write_limits.require_where', 'must be true or false'],
    ['an unknown write limit', 'write_limits: { max_row: 5 }\n', 'write_limits.max_row', 'did you mean max_rows?'],
  ];
  it.each(invalid)('refuses %s', (_, extra, path, message) => {
    const problems = problemsOf(twoAgents(extra));
    const prefix = `airlock.yaml: ${path}: `;
    const match = problems.find((p) => p.startsWith(prefix));
    expect(match, `no problem at ${path} in:\n${problems.join('\n')}`).toBeDefined();
    expect(match?.slice(prefix.length)).toContain(message);
  });

  it.each([
    ["an agent's write limit of 0", '    write_limits: { writes_per_minute: 0 }\n', 'agents[0].write_limits.writes_per_minute', 'must be at least 1 (got 0)'],
    ['a group named like an agent', '    groups: [cursor]\n', 'agents[0].groups[0]', '"cursor" is the name of agents[1]; give the group a name no agent has'],
    ['a bad group name', '    groups: ["a b"]\n', 'agents[0].groups[0]', 'must be a group name'],
  ])('refuses %s', (_, claudeLines, path, message) => {
    const text = twoAgents('').replace('    groups: [bots, ops]\n', () => claudeLines);
    const problems = problemsOf(text);
    const match = problems.find((p) => p.startsWith(`airlock.yaml: ${path}: `));
    expect(match, problems.join('\n')).toContain(message);
  });
});

describe('secrets stay out of messages', () => {
  const secretsIn = (text: string) => [UPSTREAM_PW, AGENT_PW, 'S3cret'].filter((s) => text.includes(s));

  const broken: [string, string][] = [
    ['bad port', MINIMAL.replace(':5432', () => ':99999')],
    ['unknown parameter', MINIMAL.replace('/app', () => '/app?foo=1')],
    ['literal password and bad scheme', MINIMAL.replace('postgres://airlock:${AIRLOCK_UPSTREAM_PASSWORD}', () => `mysql://airlock:${UPSTREAM_PW}`)],
    ['unencoded / in a literal password', MINIMAL.replace('${AIRLOCK_UPSTREAM_PASSWORD}', () => 'Upstream/S3cret')],
    ['bad percent-encoding in a literal password', MINIMAL.replace('${AIRLOCK_UPSTREAM_PASSWORD}', () => 'S3cret%zz')],
    ['agent password too short', MINIMAL.replace('${CLAUDE_DB_PASSWORD}', () => 'S3cret!')],
    ['agent password malformed reference', MINIMAL.replace('${CLAUDE_DB_PASSWORD}', () => "'S3cret${S3cret-x}'")],
    ['YAML error on the password line', MINIMAL.replace('${CLAUDE_DB_PASSWORD}', () => 'S3cret: x')],
    ['YAML error after the password line', MINIMAL.replace('${CLAUDE_DB_PASSWORD}', () => '"S3cret-unterminated')],
    ['password where a number goes', `${MINIMAL}audit: { flush_ms: S3cret }\n`],
  ];
  it.each(broken)('%s', (_, text) => {
    let error: unknown;
    try {
      parse(text);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const e = error as ConfigError;
    expect(e.problems.length).toBeGreaterThan(0);
    for (const rendered of [e.message, String(e), JSON.stringify(e), e.stack ?? '', JSON.stringify(e.problems)]) {
      expect(secretsIn(rendered), rendered).toEqual([]);
    }
  });

  it('describeUpstream never includes the password', () => {
    const { config } = parse(MINIMAL);
    expect(describeUpstream(config.upstream)).toBe('postgres://airlock@127.0.0.1:5432/app');
    expect(describeUpstream(config.upstream)).not.toContain(UPSTREAM_PW);
  });

  it.each([
    [{}, 'postgres://airlock@127.0.0.1:5432/app'],
    [{ host: '::1', port: 6000 }, 'postgres://airlock@[::1]:6000/app'],
    [{ user: 'svc@corp', database: 'my db' }, 'postgres://svc%40corp@127.0.0.1:5432/my%20db'],
    [{ sslmode: 'verify-full' }, 'postgres://airlock@127.0.0.1:5432/app?sslmode=verify-full'],
    [{ password: null }, 'postgres://airlock@127.0.0.1:5432/app'],
  ] as [Partial<UpstreamTarget>, string][])('describeUpstream %j', (change, expected) => {
    const u: UpstreamTarget = { host: '127.0.0.1', port: 5432, user: 'airlock', password: 'pw-not-shown', database: 'app', sslmode: 'prefer', sslrootcert: null, ...change };
    expect(describeUpstream(u)).toBe(expected);
  });
});

describe('warnings', () => {
  const warningsOf = (text: string, env = ENV) => parse(text, env).warnings;

  it.each([
    ['short agent password', withAgent('').replace('long-enough-password', () => 'only-15-chars!!'), ['airlock.yaml: agents[0].password: is shorter than 16 characters']],
    ['16-character password', withAgent('').replace('long-enough-password', () => 'exactly-16-chars'), []],
    ['sslmode=disable remote', withAgent('').replace('@127.0.0.1/app', () => '@db.example.com/app?sslmode=disable'), ['airlock.yaml: upstream: sslmode=disable sends queries and results to db.example.com unencrypted']],
    ['sslmode=disable loopback', withAgent('').replace('/app', () => '/app?sslmode=disable'), []],
    ['sslrootcert without verify', withAgent('').replace('/app', () => '/app?sslmode=require&sslrootcert=ca.pem'), ['airlock.yaml: upstream: sslrootcert is only used with sslmode=verify-ca or verify-full']],
    ['listen beyond loopback, no tls', withAgent('', 'listen: 0.0.0.0:6432\n'), ['airlock.yaml: listen: Airlock listens on 0.0.0.0 without tls']],
    ['mcp.listen beyond loopback, no tls', withAgent('', 'mcp: { listen: 0.0.0.0:6434 }\n'), ['airlock.yaml: mcp.listen: the MCP server listens on 0.0.0.0 without tls']],
    ['listen beyond loopback, tls', withAgent('', 'listen: 0.0.0.0:6432\ntls: { cert: tls/ok.crt, key: tls/ok.key }\n'), []],
    ['expired certificate', withAgent('', 'tls: { cert: tls/expired.crt, key: tls/expired.key }\n'), ['airlock.yaml: tls.cert: the certificate in']],
    ['world-readable key', withAgent('', 'tls: { cert: tls/ok.crt, key: tls/world-readable.key }\n'), ['airlock.yaml: tls.key: ']],
    ['unknown YAML tag', withAgent('').replace('long-enough-password', () => '!secret long-enough-password'), ['airlock.yaml:4:15: Unresolved tag: !secret']],
  ])('%s', (_, text, expected) => {
    const warnings = warningsOf(text);
    expect(warnings).toHaveLength(expected.length);
    expected.forEach((start, i) => expect(warnings[i]).toContain(start));
  });
});

describe('loadConfig', () => {
  it('reports a missing file with its path', async () => {
    const path = join(dir, 'missing/airlock.yaml');
    await expect(loadConfig(path, ENV)).rejects.toThrow(ConfigError);
    await expect(loadConfig(path, ENV)).rejects.toMatchObject({
      problems: [`${path}: the configuration file ${path} does not exist.`],
    });
  });

  it('resolves paths against the file, not the working directory', async () => {
    const path = writeFile('conf/airlock.yaml', withAgent('', 'state_dir: state\ntls: { cert: ../tls/ok.crt, key: ../tls/ok.key }\n'));
    const { config } = await loadConfig(path, ENV);
    expect(config.stateDir).toBe(join(dir, 'conf/state'));
    expect(config.tls).toEqual({ cert: TEST_CERT, key: TEST_KEY });
  });

  it('names the file in problems', async () => {
    const path = writeFile('bad.yaml', withAgent('    profile: nope\n'));
    await expect(loadConfig(path, ENV)).rejects.toMatchObject({
      problems: [`${path}: agents[0].profile: must be one of: read-only, read-write, writes-need-approval (got "nope")`],
    });
  });

  it.each([
    ['world-readable, passwords in the file', withAgent(''), 0o644, ['agents[0].password']],
    ['world-readable, upstream password in the file', withAgent('').replace('airlock@', () => 'airlock:written-in@').replace('long-enough-password', () => '${PW}'), 0o644, ['upstream']],
    [
      'world-readable, upstream password in the file, host from the environment',
      withAgent('').replace('airlock@127.0.0.1', () => 'airlock:written-in@${HOST}').replace('long-enough-password', () => '${PW}'),
      0o644,
      ['upstream'],
    ],
    ['world-readable, passwords from the environment', MINIMAL, 0o644, []],
    ['owner only, passwords in the file', withAgent(''), 0o600, []],
  ])('warns about a readable file holding passwords: %s', async (_, text, mode, secrets) => {
    const path = writeFile(`perm-${mode}-${secrets.length}-${text.length}.yaml`, text, mode);
    const { warnings } = await loadConfig(path, { ...ENV, PW: 'long-enough-password', HOST: 'db.internal' });
    const readable = warnings.filter((w) => w.includes('readable by every user'));
    if (secrets.length === 0) expect(readable).toEqual([]);
    else expect(readable).toEqual([expect.stringContaining(`holds passwords (${secrets.join(', ')})`)]);
  });
});

describe('the shipped example and docs', () => {
  it('examples/airlock.yaml loads', async () => {
    const { config, warnings } = await loadConfig(join(repoRoot, 'examples/airlock.yaml'), {
      AIRLOCK_UPSTREAM_PASSWORD: UPSTREAM_PW,
      CLAUDE_DB_PASSWORD: AGENT_PW,
      CURSOR_DB_PASSWORD: AGENT_PW,
    });
    expect(config.agents.map((a) => a.name)).toEqual(['claude', 'cursor']);
    expect(warnings).toEqual([]);
  });

  it('docs/config.md documents every key', () => {
    const docs = readFileSync(join(repoRoot, 'docs/config.md'), 'utf8');
    const keys = new Set<string>(Object.keys(configFileSchema.shape));
    const jsonSchema = JSON.parse(readFileSync(join(repoRoot, 'schema/airlock.schema.json'), 'utf8'));
    const walk = (node: unknown) => {
      if (typeof node !== 'object' || node === null) return;
      const properties = (node as { properties?: Record<string, unknown> }).properties;
      if (properties) Object.keys(properties).forEach((k) => keys.add(k));
      Object.values(node).forEach(walk);
    };
    walk(jsonSchema);
    expect(keys.size).toBeGreaterThan(15);
    for (const key of keys) expect(docs, `docs/config.md does not mention ${key}`).toContain(`\`${key}\``);
  });
});

describe('formatKeyPath', () => {
  it.each([
    [[], '(top level)'],
    [['listen'], 'listen'],
    [['agents', 0, 'profile'], 'agents[0].profile'],
    [['limits', 'max_clients'], 'limits.max_clients'],
    [['x y'], '["x y"]'],
    [['agents', 2, 'a.b'], 'agents[2]["a.b"]'],
  ] as [(string | number)[], string][])('%j → %s', (path, text) => {
    expect(formatKeyPath(path)).toBe(text);
  });
});
