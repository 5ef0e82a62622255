/**
 * The write path, attacked as an agent with a `read-write` profile would,
 * with raw protocol messages (issue 11): transaction control riding with a
 * write, prepared statements and portals drifting between the read and the
 * write connection, SQL-level FETCH/MOVE/EXECUTE of protocol objects,
 * cancels and hang-ups at each moment of a write, deferred triggers, Flush,
 * a freeze arriving at each point, and reads that leak.
 *
 * Judged by the database's state and by the audit record, never by the text
 * of an error. Every case asserts the same invariants:
 *  1. the database changes only as the policy allows (nothing over the row
 *     limit, nothing under a freeze, nothing in tables no rule allows);
 *  2. every kept write has exactly one record (decision allow, a change id)
 *     whose rows and tables are what really changed, and no record claims a
 *     kept write that the database does not show;
 *  3. the gateway goes on serving: a fresh session can SELECT 1.
 */
import { parseDataRow } from '../src/protocol/backend.js';
import { appendFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { encodeParse, encodeQuery, encodeSync } from '../src/protocol/frontend.js';
import { adminRequest } from '../src/cli/admin-client.js';
import { createAdminToken } from '../src/state/admin-tokens.js';
import type { AuditRecord } from '../src/state/audit-log.js';
import {
  describeMessages,
  encodeBind,
  encodeClose,
  encodeDescribe,
  encodeExecute,
  encodeFlush,
  errorsIn,
  loginClient,
  sendCancel,
} from './support/wire.js';
import type { WireClient, WireMessage, WireSession, WireValue } from './support/wire.js';
import { createTestDatabase, testServers } from './support/postgres-servers.js';
import type { TestDatabase } from './support/postgres-servers.js';
import { startTestAirlock } from './support/airlock.js';
import type { TestAirlock } from './support/airlock.js';
import {
  allRows,
  changedRows,
  claimsKeptWrite,
  dataState,
  describeRecords,
  readAuditFrom,
  recordTables,
  stateDifferences,
  tableChanges,
  tableRows,
} from './support/write-harness.js';
import type { DataState } from './support/write-harness.js';

const SCHEMA = `
  CREATE TABLE public.items (id serial PRIMARY KEY, v int NOT NULL, note text);
  CREATE TABLE public.parents (id int PRIMARY KEY, name text);
  CREATE TABLE public.children (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES public.parents ON DELETE CASCADE);
  CREATE TABLE public.locked (id int PRIMARY KEY, v text);
  CREATE TABLE public.secret (id int PRIMARY KEY, s text);
  CREATE TABLE public.trig_src (id int PRIMARY KEY, n int NOT NULL);
  -- Checked at COMMIT: a violation makes COMMIT answer ROLLBACK.
  CREATE TABLE public.dchild (id int PRIMARY KEY, parent_id int REFERENCES public.parents DEFERRABLE INITIALLY DEFERRED);
  -- Deferred work: runs at COMMIT, after any measurement taken right after the statement.
  CREATE FUNCTION public.trig_src_fire() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN DELETE FROM public.items WHERE id <= NEW.n; RETURN NULL; END $$;
  CREATE CONSTRAINT TRIGGER trig_src_deferred AFTER INSERT ON public.trig_src
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.trig_src_fire();
`;

const RESET = `
  SET lock_timeout = '5s';
  TRUNCATE public.items, public.parents, public.children, public.locked, public.secret, public.trig_src, public.dchild RESTART IDENTITY;
  INSERT INTO public.items (v, note) SELECT g, 'item ' || g FROM generate_series(1, 500) g;
  INSERT INTO public.parents SELECT g, 'parent ' || g FROM generate_series(1, 30) g;
  INSERT INTO public.children SELECT g, (g - 1) / 5 + 1 FROM generate_series(1, 150) g;
  INSERT INTO public.locked SELECT g, 'locked ' || g FROM generate_series(1, 10) g;
  INSERT INTO public.secret SELECT g, 'TOPSECRET-' || g FROM generate_series(1, 20) g;
`;

const MAX_ROWS = 100;
const POLICY = [
  // Refusals are the point here: the tripwire must not freeze ops behind the cases' backs.
  'tripwire:',
  '  refusals: 1000',
  '  window_seconds: 1',
  'rules:',
  '  - { tables: [public.locked], kinds: [insert, update, delete, merge, truncate], decision: deny }',
  '  - { kinds: [select], tables: [public.secret], decision: deny }',
  '  - { agents: [ops], kinds: [insert, update, delete], tables: [public.items, public.parents, public.children, public.trig_src, public.dchild], decision: allow }',
];
const OPS = {
  name: 'ops',
  password: 'ops-test-password',
  profile: 'read-write',
  extra: [`    write_limits: { max_rows: ${MAX_ROWS}, writes_per_minute: 100000, rows_per_hour: 100000000 }`],
};

/** Over the limit: 150 rows of items. */
const DEL150 = 'DELETE FROM items WHERE id <= 150';
/** Within the limit: 5 rows of items. */
const DEL5 = 'DELETE FROM items WHERE id > 495';
const SLOW = 'SELECT pg_sleep(1)';
const SYNC = encodeSync();
const FLUSH = encodeFlush();
const Q = encodeQuery;

/** Parse, Bind, Execute of one statement (unnamed unless named). */
function ext(sql: string, statement = '', portal = '', params: WireValue[] = []): Buffer[] {
  return [encodeParse(statement, sql), encodeBind(portal, statement, params), encodeExecute(portal)];
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** What a case's body gets: sessions of the agent (closed after the case), the freeze switch, and a place for findings. */
interface CaseTools {
  open(): Promise<{ c: WireClient; session: WireSession }>;
  /** Sends the messages as one chunk and collects `ready` ReadyForQuery messages (never throws). */
  exchange(c: WireClient, messages: Buffer[], ready?: number, timeoutMs?: number): Promise<WireMessage[]>;
  /** A simple Query, answered through ReadyForQuery (never throws). */
  q(c: WireClient, sql: string): Promise<WireMessage[]>;
  freeze(): Promise<void>;
  cancel(session: WireSession): Promise<void>;
  /** A finding that fails the case (besides the common invariants). */
  problem(text: string): void;
}

interface CaseSpec {
  /** The most rows the policy allows this case to change in all (0: the database must be unchanged). */
  maxChanged: number;
  run(t: CaseTools): Promise<void>;
}

const cases: [string, CaseSpec][] = [];
function addCase(name: string, spec: CaseSpec): void {
  cases.push([name, spec]);
}

// ---- 1. transaction control riding with a write --------------------------------------

const TX_CONTROL = ['COMMIT', 'END', 'ROLLBACK', 'ABORT', 'SAVEPOINT x', 'RELEASE x', 'ROLLBACK TO x', "PREPARE TRANSACTION 'x'", 'COMMIT AND CHAIN', 'ROLLBACK AND CHAIN'];

/** Inside: the agent's BEGIN and a savepoint x first (so that RELEASE x / ROLLBACK TO x name something), its COMMIT after. */
async function withAgentTx(t: CaseTools, c: WireClient, inTx: boolean, body: () => Promise<void>): Promise<void> {
  if (inTx) {
    await t.q(c, 'BEGIN');
    await t.q(c, 'SAVEPOINT x');
  }
  await body();
  if (inTx) await t.q(c, 'COMMIT');
}

for (const inTx of [false, true]) {
  const where = inTx ? 'inside an agent BEGIN' : 'outside a transaction';
  for (const ctl of TX_CONTROL) {
    for (const position of ['after', 'before'] as const) {
      const order = position === 'after' ? [DEL150, ctl] : [ctl, DEL150];
      addCase(`extended, one batch: [${order.join('][')}] Sync, ${where}`, {
        maxChanged: 0,
        async run(t) {
          const { c } = await t.open();
          await withAgentTx(t, c, inTx, async () => {
            await t.exchange(c, [...order.flatMap((s) => ext(s)), SYNC]);
          });
        },
      });
    }
    addCase(`pipelined: [${DEL150}] Sync [${ctl}] Sync in one chunk, ${where}`, {
      maxChanged: 0,
      async run(t) {
        const { c } = await t.open();
        await withAgentTx(t, c, inTx, async () => {
          await t.exchange(c, [...ext(DEL150), SYNC, ...ext(ctl), SYNC], 2);
        });
      },
    });
    addCase(`simple: Query "${DEL150}; ${ctl}", ${where}`, {
      maxChanged: 0,
      async run(t) {
        const { c } = await t.open();
        await withAgentTx(t, c, inTx, async () => {
          await t.q(c, `${DEL150}; ${ctl}`);
        });
      },
    });
  }
  for (const ctl of ['COMMIT', 'ROLLBACK']) {
    addCase(`extended, one batch: an allowed write then ${ctl}: [${DEL5}][${ctl}] Sync, ${where}`, {
      maxChanged: 5,
      async run(t) {
        const { c } = await t.open();
        await withAgentTx(t, c, inTx, async () => {
          await t.exchange(c, [...ext(DEL5), ...ext(ctl), SYNC]);
        });
      },
    });
  }
  addCase(`a slow trailing statement and a hang-up: [${DEL150}][COMMIT][${SLOW}] Sync, then gone, ${where}`, {
    maxChanged: 0,
    async run(t) {
      const { c } = await t.open();
      if (inTx) await t.q(c, 'BEGIN');
      c.send(...ext(DEL150), ...ext('COMMIT'), ...ext(SLOW), SYNC);
      c.destroy();
    },
  });
  addCase(`a slow trailing statement and a hang-up after an allowed write: [${DEL5}][COMMIT][${SLOW}] Sync, then gone, ${where}`, {
    maxChanged: 5,
    async run(t) {
      const { c } = await t.open();
      if (inTx) await t.q(c, 'BEGIN');
      c.send(...ext(DEL5), ...ext('COMMIT'), ...ext(SLOW), SYNC);
      c.destroy();
    },
  });
}
addCase(`a slow trailing statement and a hang-up: [${DEL150}][${SLOW}] Sync, then gone`, {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    c.send(...ext(DEL150), ...ext(SLOW), SYNC);
    c.destroy();
  },
});

// ---- 2. prepared statements and portals drifting across the connections ---------------

/** The answer holds a DataRow: the statement ran as the read it now is. */
function expectError(t: CaseTools, what: string, code: string, answer: WireMessage[]): void {
  const codes = errorsIn(answer).map((e) => e.get('C'));
  if (!codes.includes(code)) t.problem(`${what}: expected error ${code}, got ${describeMessages(answer)}`);
}

function expectRows(t: CaseTools, what: string, answer: WireMessage[]): void {
  if (!answer.some((m) => m.type === 'D')) t.problem(`${what}: expected the SELECT's rows, got ${describeMessages(answer)}`);
}

addCase('drift: Parse "s" as a DELETE in a write transaction, COMMIT, Close "s", re-Parse "s" as a SELECT, Bind/Execute "s"', {
  maxChanged: 5,
  async run(t) {
    const { c } = await t.open();
    await t.q(c, 'BEGIN');
    await t.exchange(c, [...ext(DEL5, 's'), SYNC]);
    await t.q(c, 'COMMIT');
    await t.exchange(c, [encodeClose('S', 's'), SYNC]);
    expectRows(t, 'the re-parsed "s"', await t.exchange(c, [...ext('SELECT count(*) FROM items', 's'), SYNC]));
  },
});

addCase('drift: the same, then Bind/Execute "s" inside a new transaction (the write connection)', {
  maxChanged: 5,
  async run(t) {
    const { c } = await t.open();
    await t.q(c, 'BEGIN');
    await t.exchange(c, [...ext(DEL5, 's'), SYNC]);
    await t.q(c, 'COMMIT');
    await t.exchange(c, [encodeClose('S', 's'), SYNC]);
    await t.exchange(c, [encodeParse('s', 'SELECT count(*) FROM items'), SYNC]);
    await t.q(c, 'BEGIN');
    expectRows(t, '"s" bound in the new transaction', await t.exchange(c, [encodeBind('', 's'), encodeExecute(), SYNC]));
    await t.q(c, 'COMMIT');
  },
});

addCase('drift: a DELETE parsed (never executed) in a write transaction, closed and re-parsed as SELECT 1 outside, bound in a new transaction', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.q(c, 'BEGIN');
    await t.exchange(c, [encodeParse('s', DEL150), encodeDescribe('S', 's'), SYNC]);
    await t.q(c, 'COMMIT');
    await t.exchange(c, [encodeClose('S', 's'), SYNC]);
    await t.exchange(c, [encodeParse('s', 'SELECT 1'), SYNC]);
    await t.q(c, 'BEGIN');
    await t.exchange(c, [encodeBind('', 's'), encodeExecute(), SYNC]);
    await t.q(c, 'COMMIT');
  },
});

addCase('drift: a parameterised DELETE parsed in a write transaction, re-parsed as SELECT $1::int on the read path, bound with a value in a new transaction', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.q(c, 'BEGIN');
    await t.exchange(c, [encodeParse('s', 'DELETE FROM items WHERE id <= $1::int'), SYNC]);
    await t.q(c, 'COMMIT');
    await t.exchange(c, [encodeClose('S', 's'), SYNC]);
    await t.exchange(c, [encodeParse('s', 'SELECT $1::int'), SYNC]);
    await t.q(c, 'BEGIN');
    await t.exchange(c, [encodeBind('', 's', ['150']), encodeExecute(), SYNC]);
    await t.q(c, 'COMMIT');
  },
});

addCase('drift: re-Parse of a name without Close (the server refuses it, 42P05) must not make Airlock believe the new text', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.q(c, 'BEGIN');
    await t.exchange(c, [encodeParse('s', DEL150), SYNC]);
    await t.exchange(c, [encodeParse('s', 'SELECT 1'), SYNC]);
    await t.q(c, 'ROLLBACK');
    await t.q(c, 'BEGIN');
    await t.exchange(c, [encodeParse('s', DEL150), SYNC]);
    await t.exchange(c, [encodeParse('s', 'SELECT 1'), encodeBind('', 's'), encodeExecute(), SYNC]);
    await t.q(c, 'COMMIT');
  },
});

for (const bad of ['SELECT * FROM no_such_table', 'SELEC 1 FROM']) {
  addCase(`drift: a Parse the server rejects ("${bad}") under a name last used for a DELETE, then Bind that name, outside and inside a transaction`, {
    maxChanged: 0,
    async run(t) {
      const { c } = await t.open();
      await t.exchange(c, [encodeParse('s', DEL150), SYNC]);
      await t.exchange(c, [encodeClose('S', 's'), SYNC]);
      await t.exchange(c, [encodeParse('s', bad), SYNC]);
      await t.exchange(c, [encodeBind('', 's'), encodeExecute(), SYNC]);
      await t.q(c, 'BEGIN');
      await t.exchange(c, [encodeBind('', 's'), encodeExecute(), SYNC]);
      await t.q(c, 'COMMIT');
    },
  });
}

addCase('drift: a Parse rejected inside a write transaction under the name of a DELETE parsed there, then Bind of that name after ROLLBACK', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.q(c, 'BEGIN');
    await t.exchange(c, [encodeParse('s', DEL150), SYNC]);
    await t.exchange(c, [encodeClose('S', 's'), encodeParse('s', 'SELECT * FROM no_such_table'), SYNC]);
    await t.q(c, 'ROLLBACK');
    await t.q(c, 'BEGIN');
    await t.exchange(c, [encodeBind('', 's'), encodeExecute(), SYNC]);
    await t.q(c, 'COMMIT');
  },
});

addCase('drift: Bind/Execute of a statement name Airlock never saw, outside and inside a transaction', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.exchange(c, [encodeBind('', 'ghost'), encodeExecute(), SYNC]);
    await t.exchange(c, [encodeBind('p', 'ghost'), encodeExecute('p'), SYNC]);
    await t.q(c, 'BEGIN');
    await t.exchange(c, [encodeBind('', 'ghost'), encodeExecute(), SYNC]);
    await t.q(c, 'COMMIT');
  },
});

addCase('drift: SQL-level PREPARE of a DELETE, then protocol-level Bind/Execute of its name, outside and inside a transaction', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.q(c, `PREPARE g AS ${DEL150}`);
    await t.exchange(c, [encodeBind('', 'g'), encodeExecute(), SYNC]);
    await t.q(c, 'BEGIN');
    await t.q(c, `PREPARE g AS ${DEL150}`);
    await t.q(c, 'COMMIT');
    await t.q(c, 'BEGIN');
    await t.exchange(c, [encodeBind('', 'g'), encodeExecute(), SYNC]);
    await t.q(c, 'COMMIT');
  },
});

addCase('drift: Close of a statement inside a write transaction, then use of the name on the read path and in the next transaction', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.exchange(c, [encodeParse('s', 'SELECT count(*) FROM items'), SYNC]);
    await t.q(c, 'BEGIN');
    await t.exchange(c, [encodeParse('s', DEL150), SYNC]);
    await t.exchange(c, [encodeClose('S', 's'), SYNC]);
    await t.q(c, 'COMMIT');
    // Close is session-wide in PostgreSQL: "s" is gone, on every connection Airlock holds.
    expectError(t, '"s" (SELECT, prepared on the read path) after a Close in the write transaction', '26000', await t.exchange(c, [encodeBind('', 's'), encodeExecute(), SYNC]));
    await t.q(c, 'BEGIN');
    await t.exchange(c, [encodeBind('', 's'), encodeExecute(), SYNC]);
    await t.q(c, 'COMMIT');
  },
});

addCase('drift: a DELETE over the limit parsed outside, Described and bound inside a transaction, Executed in the next batch', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.exchange(c, [encodeParse('w', DEL150), SYNC]);
    await t.q(c, 'BEGIN');
    await t.exchange(c, [encodeDescribe('S', 'w'), encodeBind('pw', 'w'), encodeDescribe('P', 'pw'), SYNC]);
    await t.exchange(c, [encodeExecute('pw'), SYNC]);
    await t.q(c, 'COMMIT');
  },
});

addCase('drift: an allowed DELETE parsed outside, Described and bound inside a transaction, Executed in the next batch, committed', {
  maxChanged: 5,
  async run(t) {
    const { c } = await t.open();
    await t.exchange(c, [encodeParse('w', DEL5), SYNC]);
    await t.q(c, 'BEGIN');
    await t.exchange(c, [encodeDescribe('S', 'w'), encodeBind('pw', 'w'), encodeDescribe('P', 'pw'), SYNC]);
    await t.exchange(c, [encodeExecute('pw'), SYNC]);
    await t.q(c, 'COMMIT');
  },
});

addCase('drift: the unnamed portal bound to a DELETE in one batch, executed in the next', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.q(c, 'BEGIN');
    await t.exchange(c, [encodeParse('', DEL150), encodeBind('', ''), SYNC]);
    await t.exchange(c, [encodeExecute(''), SYNC]);
    await t.q(c, 'COMMIT');
  },
});

addCase('drift: a portal bound in one transaction, executed in the next', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.q(c, 'BEGIN');
    await t.exchange(c, [encodeParse('d', DEL150), encodeBind('p', 'd'), SYNC]);
    await t.q(c, 'COMMIT');
    await t.q(c, 'BEGIN');
    await t.exchange(c, [encodeExecute('p'), SYNC]);
    await t.q(c, 'COMMIT');
  },
});

addCase('drift: a failed Bind (unknown statement) of a portal name holding a DELETE, then Execute of that portal', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.q(c, 'BEGIN');
    await t.exchange(c, [encodeParse('d', DEL150), encodeBind('p', 'd'), SYNC]);
    await t.exchange(c, [encodeBind('p', 'ghost'), encodeExecute('p'), SYNC]);
    await t.exchange(c, [encodeExecute('p'), SYNC]);
    await t.q(c, 'COMMIT');
  },
});

addCase('drift: a failed Bind (duplicate portal) of a SELECT onto a portal holding a DELETE, then Execute', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.q(c, 'BEGIN');
    await t.exchange(c, [encodeParse('d', DEL150), encodeBind('p', 'd'), SYNC]);
    await t.exchange(c, [encodeParse('q', 'SELECT 1'), encodeBind('p', 'q'), encodeExecute('p'), SYNC]);
    await t.exchange(c, [encodeExecute('p'), SYNC]);
    await t.q(c, 'COMMIT');
  },
});

addCase('drift: a failed Bind (bad parameter) of the unnamed portal, then Execute of the unnamed portal', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.exchange(c, [encodeParse('d', 'DELETE FROM items WHERE id <= $1::int'), encodeBind('', 'd', ['not a number']), encodeExecute(''), SYNC]);
    await t.exchange(c, [encodeExecute(''), SYNC]);
    await t.q(c, 'BEGIN');
    await t.exchange(c, [encodeBind('', 'd', ['150']), SYNC]);
    await t.exchange(c, [encodeBind('', 'd', ['x']), encodeExecute(''), SYNC]);
    await t.q(c, 'COMMIT');
  },
});

// The same attacks with a write inside the limit, under a freeze that starts once the statement is prepared: nothing may run.
const DRIFT_ATTACKS: [string, (t: CaseTools, c: WireClient, write: string, armed: () => Promise<void>) => Promise<void>][] = [
  [
    'SQL DEALLOCATE on the read path of a statement prepared on the write connection, then Bind of its name in a transaction',
    async (t, c, write, armed) => {
      await t.q(c, 'BEGIN');
      await t.exchange(c, [encodeParse('s', write), SYNC]);
      await t.q(c, 'COMMIT');
      await armed();
      await t.q(c, 'DEALLOCATE s');
      await t.q(c, 'BEGIN');
      await t.exchange(c, [encodeBind('', 's'), encodeExecute(), SYNC]);
      await t.q(c, 'COMMIT');
    },
  ],
  [
    'SQL DEALLOCATE ALL on the read path, then Bind of a write statement\'s name in a transaction',
    async (t, c, write, armed) => {
      await t.q(c, 'BEGIN');
      await t.exchange(c, [encodeParse('s', write), SYNC]);
      await t.q(c, 'COMMIT');
      await armed();
      await t.q(c, 'DEALLOCATE ALL');
      await t.q(c, 'BEGIN');
      await t.exchange(c, [encodeBind('', 's'), encodeExecute(), SYNC]);
      await t.q(c, 'COMMIT');
    },
  ],
  [
    'a Parse the server rejected on the read path, then the same name parsed as a write in a transaction and executed',
    async (t, c, write, armed) => {
      await t.exchange(c, [encodeParse('s', 'SELECT * FROM no_such_table'), SYNC]);
      await t.q(c, 'BEGIN');
      await t.exchange(c, [encodeParse('s', write), SYNC]);
      await armed();
      await t.exchange(c, [encodeBind('', 's'), encodeExecute(), SYNC]);
      await t.q(c, 'COMMIT');
    },
  ],
  [
    'a Parse the server rejected in a transaction, then the same name parsed as a write in the next one and executed',
    async (t, c, write, armed) => {
      await t.q(c, 'BEGIN');
      await t.exchange(c, [encodeParse('s', 'SELECT * FROM no_such_table'), SYNC]);
      await t.q(c, 'ROLLBACK');
      await t.q(c, 'BEGIN');
      await t.exchange(c, [encodeParse('s', write), SYNC]);
      await armed();
      await t.exchange(c, [encodeBind('', 's'), encodeExecute(), SYNC]);
      await t.q(c, 'COMMIT');
    },
  ],
  [
    'a write parsed in a transaction, closed and re-parsed as SELECT 1 on the read path, bound in a new transaction',
    async (t, c, write, armed) => {
      await t.q(c, 'BEGIN');
      await t.exchange(c, [encodeParse('s', write), SYNC]);
      await t.q(c, 'COMMIT');
      await armed();
      await t.exchange(c, [encodeClose('S', 's'), SYNC]);
      await t.exchange(c, [encodeParse('s', 'SELECT 1'), SYNC]);
      await t.q(c, 'BEGIN');
      await t.exchange(c, [encodeBind('', 's'), encodeExecute(), SYNC]);
      await t.q(c, 'COMMIT');
    },
  ],
  [
    'a write bound into a portal, then the portal executed by SQL (MOVE ALL) in the same transaction',
    async (t, c, write, armed) => {
      await t.q(c, 'BEGIN');
      await t.exchange(c, [encodeParse('', `${write} RETURNING id`), encodeBind('p', ''), SYNC]);
      await armed();
      await t.q(c, 'MOVE ALL IN p');
      await t.q(c, 'COMMIT');
    },
  ],
];

for (const [label, attack] of DRIFT_ATTACKS) {
  addCase(`drift: ${label} (${DEL150}, over the limit)`, {
    maxChanged: 0,
    async run(t) {
      const { c } = await t.open();
      await attack(t, c, DEL150, async () => undefined);
    },
  });
  addCase(`drift under a freeze: ${label} (${DEL5}, frozen once prepared)`, {
    maxChanged: 0,
    async run(t) {
      const { c } = await t.open();
      await attack(t, c, DEL5, () => t.freeze());
    },
  });
}

// ---- 3. SQL-level FETCH / MOVE / EXECUTE / CLOSE / DEALLOCATE of protocol objects ------

for (const verb of ['MOVE ALL IN p', 'FETCH ALL IN p', 'FETCH 1 IN p', 'MOVE FORWARD 1 FROM p']) {
  addCase(`SQL over a protocol portal: a DELETE bound into portal "p" (not executed), then Query "${verb}"`, {
    maxChanged: 0,
    async run(t) {
      const { c } = await t.open();
      await t.q(c, 'BEGIN');
      await t.exchange(c, [encodeParse('', `${DEL150} RETURNING id`), encodeBind('p', ''), SYNC]);
      await t.q(c, verb);
      await t.q(c, 'COMMIT');
    },
  });
}

addCase('SQL over a protocol portal: FETCH/MOVE by the names pg_cursors shows', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.q(c, 'BEGIN');
    await t.exchange(c, [encodeParse('', `${DEL150} RETURNING id`), encodeBind('p', ''), SYNC]);
    const names = rowsOf(await t.q(c, 'SELECT name FROM pg_cursors')).map((r) => r[0] ?? '');
    for (const name of names) {
      await t.q(c, `MOVE ALL IN ${quoteIdent(name)}`);
      await t.q(c, `FETCH ALL IN ${quoteIdent(name)}`);
    }
    await t.q(c, 'COMMIT');
  },
});

addCase('SQL over a protocol statement: EXECUTE by the names pg_prepared_statements shows', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.q(c, 'BEGIN');
    await t.exchange(c, [encodeParse('s', DEL150), SYNC]);
    const names = rowsOf(await t.q(c, 'SELECT name FROM pg_prepared_statements')).map((r) => r[0] ?? '');
    for (const name of ['s', ...names]) await t.q(c, `EXECUTE ${quoteIdent(name)}`);
    await t.q(c, 'COMMIT');
  },
});

addCase('SQL over protocol objects: CLOSE p and DEALLOCATE s, then the names re-used at protocol level as a SELECT', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.q(c, 'BEGIN');
    await t.exchange(c, [encodeParse('s', DEL5), encodeBind('p', 's'), SYNC]);
    await t.q(c, 'CLOSE p');
    await t.q(c, 'DEALLOCATE s');
    await t.exchange(c, [encodeParse('s', 'SELECT count(*) FROM items'), encodeBind('p', 's'), encodeExecute('p'), SYNC]);
    await t.exchange(c, [encodeBind('p2', 's'), encodeExecute('p2'), SYNC]);
    await t.q(c, 'COMMIT');
  },
});

addCase('Execute with a row limit of a DELETE … RETURNING portal, then the rest by FETCH', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.q(c, 'BEGIN');
    await t.exchange(c, [encodeParse('', `${DEL150} RETURNING id`), encodeBind('p', ''), encodeExecute('p', 1), SYNC]);
    await t.q(c, 'FETCH ALL IN p');
    await t.q(c, 'COMMIT');
  },
});

// ---- 4. measurement failures: cancels, deferred triggers, hang-ups --------------------

for (const delay of [0, 1, 5, 20]) {
  for (const [label, sql, max, inTx] of [
    ['over the limit', DEL150, 0, false],
    ['allowed', DEL5, 5, false],
    ['over the limit, in a transaction', DEL150, 0, true],
  ] as const) {
    addCase(`a CancelRequest ${delay} ms after the Execute of a write (${label})`, {
      maxChanged: max,
      async run(t) {
        const { c, session } = await t.open();
        if (inTx) await t.q(c, 'BEGIN');
        c.send(...ext(sql), SYNC);
        await sleep(delay);
        await t.cancel(session);
        await t.exchange(c, [], 1);
        if (inTx) await t.q(c, 'COMMIT');
      },
    });
  }
}

for (const [n, inTx] of [
  [150, false],
  [20, false],
  [150, true],
  [20, true],
] as const) {
  addCase(`a deferred constraint trigger deleting ${n} rows of items at COMMIT, fired by a one-row INSERT${inTx ? ' in an agent transaction' : ''}`, {
    maxChanged: n > MAX_ROWS ? 0 : n + 1,
    async run(t) {
      const { c } = await t.open();
      if (inTx) await t.q(c, 'BEGIN');
      await t.exchange(c, [...ext('INSERT INTO trig_src (id, n) VALUES ($1::int, $2::int)', '', '', ['1', String(n)]), SYNC]);
      if (inTx) await t.q(c, 'COMMIT');
    },
  });
}

addCase('a deferred foreign key that fails at Airlock\'s own COMMIT (COMMIT answers ROLLBACK): the agent must not hear success', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    const answer = await t.exchange(c, [...ext('INSERT INTO dchild (id, parent_id) VALUES (1, 9999)'), SYNC]);
    if (errorsIn(answer).length === 0) t.problem(`the write was rolled back at COMMIT, yet the agent heard ${describeMessages(answer)}`);
  },
});

addCase('a deferred foreign key that fails at the agent\'s COMMIT, after an allowed write in the same transaction', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.q(c, 'BEGIN');
    await t.exchange(c, [...ext(DEL5), SYNC]);
    await t.exchange(c, [...ext('INSERT INTO dchild (id, parent_id) VALUES (1, 9999)'), SYNC]);
    const answer = await t.q(c, 'COMMIT');
    // PostgreSQL answers the COMMIT of a failed transaction with the tag ROLLBACK (no error); anything else claiming success is wrong.
    const rolledBackTag = answer.some((m) => m.type === 'C' && m.body.toString('utf8').startsWith('ROLLBACK'));
    if (errorsIn(answer).length === 0 && !rolledBackTag) t.problem(`the transaction was rolled back at COMMIT, yet the agent heard ${describeMessages(answer)}`);
  },
});

for (const [sql, max] of [
  [DEL150, 0],
  [DEL5, 5],
] as const) {
  addCase(`a hang-up before Sync, after [${sql}] Execute`, {
    maxChanged: max,
    async run(t) {
      const { c } = await t.open();
      c.send(...ext(sql));
      await sleep(20);
      c.destroy();
    },
  });
  addCase(`a hang-up right after Sync, before reading: [${sql}] Sync`, {
    maxChanged: max,
    async run(t) {
      const { c } = await t.open();
      c.send(...ext(sql), SYNC);
      c.destroy();
    },
  });
  addCase(`a hang-up 3 ms after Sync: [${sql}] Sync`, {
    maxChanged: max,
    async run(t) {
      const { c } = await t.open();
      c.send(...ext(sql), SYNC);
      await sleep(3);
      c.destroy();
    },
  });
  addCase(`a hang-up right after sending COMMIT of a transaction with [${sql}]`, {
    maxChanged: max,
    async run(t) {
      const { c } = await t.open();
      await t.q(c, 'BEGIN');
      await t.exchange(c, [...ext(sql), SYNC]);
      c.send(Q('COMMIT'));
      c.destroy();
    },
  });
}

// ---- 5. Flush between messages ----------------------------------------------------------

addCase(`a simple COMMIT between a write's Execute and Sync, no Flush: [${DEL150}][Query COMMIT][Sync]`, {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.exchange(c, [...ext(DEL150), Q('COMMIT'), SYNC], 2);
  },
});

addCase(`Flush between a read and a write: [SELECT][Flush][${DEL150}][Sync]`, {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.exchange(c, [...ext('SELECT count(*) FROM items'), FLUSH, ...ext(DEL150), SYNC]);
  },
});

addCase(`Flush between a read and a write inside a transaction: [SELECT][Flush][${DEL150}][Sync], COMMIT`, {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.q(c, 'BEGIN');
    await t.exchange(c, [...ext('SELECT count(*) FROM items'), FLUSH, ...ext(DEL150), SYNC]);
    await t.q(c, 'COMMIT');
  },
});

addCase(`Flush, its answers read, then a write: [SELECT][Flush] … [${DEL150}][Sync]`, {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    c.send(...ext('SELECT count(*) FROM items'), FLUSH);
    await sleep(100);
    await t.exchange(c, [...ext(DEL150), SYNC]);
  },
});

addCase(`Flush right after a write's Execute: [${DEL150}][Flush] … [Sync]`, {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    c.send(...ext(DEL150), FLUSH);
    await sleep(100);
    await t.exchange(c, [SYNC]);
  },
});

addCase(`Flush then a simple COMMIT before Sync: [${DEL150}][Flush][Query COMMIT][Sync] in a transaction`, {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.q(c, 'BEGIN');
    await t.exchange(c, [...ext(DEL150), FLUSH, Q('COMMIT'), SYNC], 2);
    await t.q(c, 'COMMIT');
  },
});

addCase(`Flush between an allowed write and COMMIT: [${DEL5}][Flush][COMMIT][Sync] in a transaction`, {
  maxChanged: 5,
  async run(t) {
    const { c } = await t.open();
    await t.q(c, 'BEGIN');
    await t.exchange(c, [...ext(DEL5), FLUSH, ...ext('COMMIT'), SYNC]);
  },
});

// ---- 6. a freeze arriving at each point --------------------------------------------------

addCase('freeze before BEGIN: BEGIN, an allowed write, COMMIT', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.freeze();
    await t.q(c, 'BEGIN');
    await t.exchange(c, [...ext(DEL5), SYNC]);
    await t.q(c, 'COMMIT');
  },
});

addCase('freeze after BEGIN, before the write', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.q(c, 'BEGIN');
    await t.freeze();
    await t.exchange(c, [...ext(DEL5), SYNC]);
    await t.q(c, 'COMMIT');
  },
});

for (const [label, commit] of [
  ['COMMIT', (t: CaseTools, c: WireClient) => t.q(c, 'COMMIT')],
  ['END', (t: CaseTools, c: WireClient) => t.q(c, 'END')],
  ['COMMIT (extended)', (t: CaseTools, c: WireClient) => t.exchange(c, [...ext('COMMIT'), SYNC])],
  ['COMMIT AND CHAIN, COMMIT', async (t: CaseTools, c: WireClient) => [...(await t.q(c, 'COMMIT AND CHAIN')), ...(await t.q(c, 'COMMIT'))]],
  ["PREPARE TRANSACTION 'x', COMMIT PREPARED 'x'", async (t: CaseTools, c: WireClient) => [...(await t.q(c, "PREPARE TRANSACTION 'x'")), ...(await t.q(c, "COMMIT PREPARED 'x'"))]],
  ['RELEASE of a savepoint, COMMIT', async (t: CaseTools, c: WireClient) => [...(await t.q(c, 'RELEASE SAVEPOINT x')), ...(await t.q(c, 'COMMIT'))]],
] as const) {
  addCase(`freeze after the write, before ${label}: the commit is refused and nothing is kept`, {
    maxChanged: 0,
    async run(t) {
      const { c } = await t.open();
      await t.q(c, 'BEGIN');
      await t.q(c, 'SAVEPOINT x');
      await t.exchange(c, [...ext(DEL5), SYNC]);
      await t.freeze();
      const answer = await commit(t, c);
      if (errorsIn(answer).length === 0) t.problem(`${label} under the freeze was not refused: ${describeMessages(answer)}`);
    },
  });
}

addCase('freeze between Parse and Execute of a prepared write (separate batches)', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.exchange(c, [encodeParse('w', DEL5), SYNC]);
    await t.freeze();
    await t.exchange(c, [encodeBind('', 'w'), encodeExecute(), SYNC]);
  },
});

addCase('freeze between Bind and Execute of a prepared write, in a transaction', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    await t.q(c, 'BEGIN');
    await t.exchange(c, [encodeParse('w', DEL5), encodeBind('p', 'w'), SYNC]);
    await t.freeze();
    await t.exchange(c, [encodeExecute('p'), SYNC]);
    await t.q(c, 'COMMIT');
  },
});

addCase('freeze while one batch is being sent: [Parse][Bind] … freeze … [Execute][Sync]', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    c.send(encodeParse('', DEL5), encodeBind('', ''));
    await sleep(30);
    await t.freeze();
    await t.exchange(c, [encodeExecute(), SYNC]);
  },
});

addCase('freeze while a pipelined transaction is in flight: BEGIN, slow read, write, COMMIT sent at once', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    c.send(Q('BEGIN'), ...ext('SELECT pg_sleep(0.3)'), SYNC, ...ext(DEL5), SYNC, Q('COMMIT'));
    await sleep(50);
    await t.freeze();
    await t.exchange(c, [], 4);
  },
});

addCase('freeze while pipelined writes are in flight outside a transaction: slow read, write', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    c.send(...ext('SELECT pg_sleep(0.3)'), SYNC, ...ext(DEL5), SYNC);
    await sleep(50);
    await t.freeze();
    await t.exchange(c, [], 2);
  },
});

addCase('freeze while a slow write runs (Airlock must not commit it after the freeze)', {
  maxChanged: 0,
  async run(t) {
    const { c } = await t.open();
    c.send(...ext('DELETE FROM items WHERE id IN (SELECT id FROM items, pg_sleep(0.3) WHERE id > 495)'), SYNC);
    await sleep(50);
    await t.freeze();
    await t.exchange(c, [], 1);
  },
});

// ---- 7. reads that leak ----------------------------------------------------------------------

/** The read is refused and shows nothing of the secret table. */
async function refusedRead(t: CaseTools, c: WireClient, sql: string, form: 'simple' | 'extended'): Promise<void> {
  const answer = form === 'simple' ? await t.q(c, sql) : await t.exchange(c, [...ext(sql), SYNC]);
  const leaked = answer.filter((m) => m.type === 'D').map((m) => parseDataRow(m.body).join('|'));
  if (leaked.some((row) => row.includes('TOPSECRET'))) t.problem(`${sql}: leaked the secret table's values: ${leaked.join(' / ').slice(0, 200)}`);
  if (errorsIn(answer).length === 0) t.problem(`${sql}: not refused (${leaked.length} rows)`);
}

for (const [sql, inTx, form] of [
  ["SELECT * FROM pg_stats WHERE tablename = 'secret'", false, 'simple'],
  ["SELECT * FROM pg_stats WHERE tablename = 'secret'", true, 'extended'],
  ["SELECT * FROM pg_stats WHERE tablename = 'locked'", false, 'simple'],
  ["SELECT stavalues1::text, stavalues2::text FROM pg_statistic WHERE starelid = 'public.secret'::regclass", true, 'simple'],
  ['SELECT * FROM pg_hba_file_rules()', true, 'simple'],
  ['SELECT * FROM pg_ident_file_mappings()', true, 'simple'],
  ['SELECT * FROM pg_hba_file_rules', true, 'extended'],
] as const) {
  addCase(`a read that leaks, ${inTx ? 'inside a write transaction' : 'on the read path'} (${form}): ${sql}`, {
    maxChanged: 0,
    async run(t) {
      const { c } = await t.open();
      if (inTx) await t.q(c, 'BEGIN');
      await refusedRead(t, c, sql, form);
      if (inTx) await t.q(c, 'ROLLBACK');
    },
  });
}

// ---- the harness ------------------------------------------------------------------------------

function rowsOf(messages: WireMessage[]): (string | null)[][] {
  return messages.filter((m) => m.type === 'D').map((m) => parseDataRow(m.body));
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Claimed kept writes, minus those the record itself takes back (a later ROLLBACK, or a refused COMMIT, in the same session). */
function keptClaims(records: AuditRecord[]): AuditRecord[] {
  return records.filter((r, i) => {
    if (!claimsKeptWrite(r)) return false;
    return !records.slice(i + 1).some(
      (later) =>
        later.session === r.session &&
        later.event === 'statement' &&
        typeof later.text === 'string' &&
        ((/^\s*(rollback|abort)\b(?!\s+to\b)/i.test(later.text) && later.decision === 'allow') ||
          (/^\s*(commit|end)\b/i.test(later.text) && (later.decision === 'deny' || later.sqlstate !== undefined || later.detail?.outcome === 'rolled back'))),
    );
  });
}

for (const server of testServers()) {
  describe(`the write path under attack (${server.name})`, () => {
    let db: TestDatabase;
    let airlock: TestAirlock;
    let admin: pg.Client;
    let token: string;
    /** The seeded state every case starts from, and its rows. */
    let seeded: DataState;
    let seededRows: Record<string, string[]>;
    /** Where the audit log's next case begins. */
    let auditOffset = 0;

    const adminApi = (path: string, body: unknown) =>
      adminRequest({ host: airlock.gateway.adminAddress.host, port: airlock.gateway.adminAddress.port, token }, 'POST', path, body);

    beforeAll(async () => {
      db = await createTestDatabase(server);
      admin = new pg.Client({ connectionString: db.url });
      await admin.connect();
      await admin.query(SCHEMA);
      await admin.query(RESET);
      await admin.query('ANALYZE');
      seeded = await dataState(admin);
      seededRows = await allRows(admin);
      airlock = await startTestAirlock(server, db, { agents: [OPS], extraYaml: POLICY });
      token = await createAdminToken(airlock.stateDir, 'alice');
    });

    afterAll(async () => {
      await admin?.end().catch(() => undefined);
      await airlock?.close();
      await db?.drop();
    });

    for (const [name, spec] of cases) {
      it(name, async () => {
        await runCase(name, spec);
      });
    }

    /** Upstream sessions of the test database still busy (running, or in a transaction), besides ours. */
    async function busySessions(): Promise<string[]> {
      const r = await admin.query<{ line: string }>(
        `SELECT format('pid %s %s (%s): %s', pid, usename, state, left(query, 60)) AS line FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND state IS DISTINCT FROM 'idle'`,
      );
      return r.rows.map((x) => x.line);
    }

    async function settle(timeoutMs: number): Promise<string[]> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const busy = await busySessions();
        if (busy.length === 0 || Date.now() > deadline) return busy;
        await sleep(25);
      }
    }

    async function runCase(name: string, spec: CaseSpec): Promise<void> {
      const problems: string[] = [];
      // A clean start: no leftovers of the previous case, the seeded rows (restored only when changed), no freeze.
      const leftovers = await settle(3_000);
      if (leftovers.length > 0) {
        await admin.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`,
        );
      }
      let before = await dataState(admin);
      if (stateDifferences(seeded, before).length > 0) {
        for (const gid of before.preparedXacts) await admin.query(`ROLLBACK PREPARED ${admin.escapeLiteral(gid)}`);
        await admin.query(RESET);
        before = await dataState(admin);
      }
      expect(stateDifferences(seeded, before), 'the seeded state, restored').toEqual([]);
      expect((await adminApi('/v1/unfreeze', { agent: 'ops' })).status).toBe(200);
      await airlock.audit.flush();
      auditOffset = (await readAuditFrom(airlock.stateDir, auditOffset)).end;

      const clients: WireClient[] = [];
      const tools: CaseTools = {
        async open() {
          const { client, session } = await loginClient(airlock.clientConfig('ops'));
          clients.push(client);
          return { c: client, session };
        },
        async exchange(c, messages, ready = 1, timeoutMs = 8_000) {
          if (messages.length > 0 && !c.closed) c.send(...messages);
          const r = await c.collect(ready, timeoutMs);
          if (r.timedOut) problems.push(`no answer within ${timeoutMs} ms (got ${describeMessages(r.messages)})`);
          return r.messages;
        },
        q(c, sql) {
          return tools.exchange(c, [Q(sql)]);
        },
        async freeze() {
          const r = await adminApi('/v1/freeze', { agent: 'ops', reason: 'adversarial test' });
          expect(r.status).toBe(201);
        },
        cancel(session) {
          return sendCancel(airlock.port, session.processId, session.secretKey);
        },
        problem(text) {
          problems.push(text);
        },
      };
      try {
        await spec.run(tools);
      } finally {
        for (const c of clients) c.destroy();
      }

      // Let whatever the gateway still does for the case finish (a hung-up session's write, a slow statement).
      const busy = await settle(4_000);
      if (busy.length > 0) problems.push(`upstream sessions still busy 4 s after the case's clients left: ${busy.join('; ')}`);
      await airlock.audit.flush();
      const after = await dataState(admin);
      const read = await readAuditFrom(airlock.stateDir, auditOffset);
      const records = read.records;
      auditOffset = read.end;

      // (1) The database changes only as the policy allows.
      const differences = stateDifferences(before, after);
      const changedTables = Object.keys(after.tables).filter((table) => after.tables[table] !== before.tables[table]);
      const afterRows: Record<string, string[]> = {};
      for (const table of changedTables) afterRows[table] = await tableRows(admin, table);
      const changes = tableChanges(Object.fromEntries(changedTables.map((table) => [table, seededRows[table] ?? []])), afterRows);
      const actual = changedRows(changes);
      const total = Object.values(actual).reduce((a, b) => a + b, 0);
      const diff = JSON.stringify(changes);
      if (total > spec.maxChanged) problems.push(`DB: ${total} rows changed, the policy allows at most ${spec.maxChanged}: ${diff}`);
      for (const table of ['public.locked', 'public.secret']) {
        if (actual[table] !== undefined) problems.push(`DB: ${table}, which no rule lets ops write, changed: ${diff}`);
      }
      if (JSON.stringify(after.sequences) !== JSON.stringify(before.sequences)) problems.push(`DB: sequences moved: ${JSON.stringify(before.sequences)} → ${JSON.stringify(after.sequences)}`);
      if (after.preparedXacts.length > 0) problems.push(`DB: prepared transactions left: ${after.preparedXacts.join(', ')}`);
      if (spec.maxChanged === 0 && differences.length > 0) problems.push(`DB: fingerprint changed: ${differences.join('; ')}`);

      // (2) Every kept write has exactly one truthful record; no record claims a write the DB does not show.
      const claims = keptClaims(records);
      const ids = claims.map((r) => String((r.detail as { changeId?: unknown }).changeId));
      if (new Set(ids).size !== ids.length) problems.push(`audit: a change id is on the record more than once: ${ids.join(', ')}`);
      const claimed: Record<string, number> = {};
      for (const r of claims) {
        const tables = recordTables(r);
        const sum = Object.values(tables).reduce((a, b) => a + b, 0);
        if (r.rows !== sum) problems.push(`audit: record rows=${String(r.rows)} but its tables add up to ${sum}: ${JSON.stringify(r.detail)}`);
        for (const [table, n] of Object.entries(tables)) claimed[table] = (claimed[table] ?? 0) + n;
      }
      for (const table of new Set([...Object.keys(claimed), ...Object.keys(actual)])) {
        const c = claimed[table] ?? 0;
        const a = actual[table] ?? 0;
        if (c !== a) problems.push(`audit: the record claims ${c} kept rows of ${table}, the database shows ${a} changed`);
      }

      // (3) The gateway keeps serving.
      try {
        const { client } = await loginClient(airlock.clientConfig('ops'), { timeoutMs: 5_000 });
        try {
          const r = await client.exchange([Q('SELECT 1')], 1, 5_000);
          if (!rowsOf(r.messages).some((row) => row[0] === '1')) problems.push(`gateway: a fresh session's SELECT 1 got ${describeMessages(r.messages)}`);
        } finally {
          client.close();
        }
      } catch (error) {
        problems.push(`gateway: a fresh session could not log in: ${String(error)}`);
      }

      if (process.env.AIRLOCK_ADV_FINDINGS !== undefined && problems.length > 0) {
        // A machine-readable list of what failed, for the report that drives the fix.
        await appendFile(process.env.AIRLOCK_ADV_FINDINGS, `${JSON.stringify({ server: server.name, case: name, problems, records: describeRecords(records) })}\n`);
      }
      expect(problems, `findings\nrecords of the case:\n${describeRecords(records)}`).toEqual([]);
    }
  });
}
