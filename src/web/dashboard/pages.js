// The dashboard's pages. Each takes the shared context (the store of what
// the server said, the session, a way to show a message) and returns its
// element; it keeps itself current by listening to the store.
import { h, keepingInputs, replace, pill, plural, time, relative } from './dom.js';
import { api, ApiError } from './api.js';
import { highlightSql } from './sql.js';

/** A TOTP input when admin.totp_secret is set (approve and unfreeze need a code), else null. */
function totpInput(ctx, name) {
  if (!ctx.session.secondFactor) return null;
  return h('input', { class: 'totp', name, inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6}', maxlength: '6', placeholder: 'TOTP code', 'aria-label': 'TOTP code', required: true });
}

/** Runs an action of a button: disables it meanwhile, shows the outcome. */
async function act(ctx, button, fn) {
  button.disabled = true;
  try {
    const result = await fn();
    if (result && typeof result.message === 'string') ctx.toast(result.message, 'ok');
    return result;
  } catch (err) {
    ctx.toast(err instanceof Error ? err.message : String(err), 'bad');
    return undefined;
  } finally {
    button.disabled = false;
  }
}

function section(title, ...children) {
  return h('section', { class: 'panel' }, h('h2', {}, title), ...children);
}

function empty(text) {
  return h('p', { class: 'empty' }, text);
}

// ---------------------------------------------------------------------------
// Pending approvals

/** A row image (row_to_json text) as a small key/value table. */
function rowImage(json) {
  let value;
  try {
    value = JSON.parse(json);
  } catch {
    return h('pre', { class: 'raw' }, json);
  }
  if (value === null || typeof value !== 'object') return h('pre', { class: 'raw' }, json);
  return h(
    'table',
    { class: 'kv' },
    h('tbody', {}, Object.entries(value).map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, v === null ? h('span', { class: 'null' }, 'null') : typeof v === 'object' ? JSON.stringify(v) : String(v))))),
  );
}

const IMAGE_KIND = { o: 'before', n: 'after', d: 'deleted', i: 'inserted', t: 'before (truncated)' };

/** The dry run's impact: rows per table, and the sample rows as they are and as they would be. */
function impactView(request) {
  const tables = Object.entries(request.impact ?? {});
  const samples = request.sample ?? [];
  if (request.read !== undefined) {
    // A held read is planned, never run: the planner's estimate, not a count.
    return h(
      'div',
      { class: 'impact', dataset: { test: 'impact' } },
      h('h4', {}, 'A read: the planner’s estimate (not run)'),
      h('p', {}, request.read.rows === null ? 'The planner gave no estimate.' : `About ${plural(request.read.rows, 'row')} returned.`),
      tables.length === 0 ? null : h('ul', { class: 'impact-tables' }, tables.map(([t, n]) => h('li', {}, h('code', {}, t), ' ', pill(`~${plural(n, 'row')}`, 'info')))),
    );
  }
  return h(
    'div',
    { class: 'impact', dataset: { test: 'impact' } },
    h('h4', {}, 'Dry-run impact'),
    tables.length === 0
      ? empty('The dry run changed no rows.')
      : h('ul', { class: 'impact-tables' }, tables.map(([t, n]) => h('li', {}, h('code', {}, t), ' ', pill(plural(n, 'row'), n > 0 ? 'warn' : 'muted')))),
    samples.length === 0
      ? null
      : h(
          'details',
          { class: 'samples', open: true },
          h('summary', {}, `Sample rows (${samples.length})`),
          h('div', { class: 'sample-grid' }, samples.map((s) => h('figure', { class: `sample kind-${s.kind}` }, h('figcaption', {}, h('code', {}, s.table), ' ', pill(IMAGE_KIND[s.kind] ?? s.kind, s.kind === 'n' || s.kind === 'i' ? 'info' : 'muted')), rowImage(s.image)))),
        ),
  );
}

function approvalCard(ctx, request) {
  const maxRows = h('input', { type: 'number', min: '0', step: '1', name: 'max_rows', placeholder: 'dry run’s impact', 'aria-label': 'Row bound (optional)' });
  const approveTotp = totpInput(ctx, 'approve-totp');
  const approve = h('button', { class: 'primary', type: 'submit', dataset: { test: 'approve' } }, 'Approve once');
  const denyReason = h('input', { name: 'deny-reason', required: true, maxlength: '1000', placeholder: 'Why not (the agent is told)', 'aria-label': 'Reason for denying' });
  const deny = h('button', { class: 'danger', type: 'submit', dataset: { test: 'deny' } }, 'Deny');
  // Kept current as freezes come and go (approvalsPage calls showFrozen).
  const frozenSlot = h('div', { class: 'frozen-slot' });
  const showFrozen = () => {
    const frozen = ctx.store.frozenCause(request.agent);
    replace(frozenSlot, frozen ? h('p', { class: 'notice bad' }, `Agent "${request.agent}" is frozen (${frozen}): this request cannot be approved until the freeze is lifted.`) : null);
  };
  showFrozen();
  const card = h(
    'article',
    { class: 'card approval', id: `approval-${request.id}`, dataset: { test: 'approval', id: String(request.id) } },
    h(
      'header',
      {},
      h('h3', {}, `#${request.id}`, ' ', h('span', { class: 'agent' }, request.agent)),
      h('span', { class: 'meta' }, 'asked ', time(request.created), ' · expires ', relative(request.expires)),
    ),
    frozenSlot,
    h('p', { class: 'reason' }, h('span', { class: 'label' }, 'Stated reason '), request.reason ? h('q', {}, request.reason) : h('em', {}, 'none given'), h('span', { class: 'hint' }, ' (the agent’s own words: shown, never trusted)')),
    h('pre', { class: 'statement' }, highlightSql(request.text)),
    request.params && request.params.length > 0 ? h('p', { class: 'params' }, 'Parameters: ', request.params.map((p, i) => h('code', {}, `$${i + 1} = ${p === null ? 'NULL' : p}`))) : null,
    impactView(request),
    h(
      'div',
      { class: 'decide' },
      h(
        'form',
        {
          class: 'approve-form',
          onsubmit: async (e) => {
            e.preventDefault();
            const body = maxRows.value === '' ? {} : { max_rows: Number(maxRows.value) };
            const done = await act(ctx, approve, () => api('POST', `/v1/approvals/${request.id}/approve`, body, { totp: approveTotp?.value }));
            if (done) ctx.store.refreshApprovals();
          },
        },
        h('label', {}, 'Row bound ', maxRows),
        approveTotp,
        approve,
      ),
      h(
        'form',
        {
          class: 'deny-form',
          onsubmit: async (e) => {
            e.preventDefault();
            const done = await act(ctx, deny, () => api('POST', `/v1/approvals/${request.id}/deny`, { reason: denyReason.value }));
            if (done) ctx.store.refreshApprovals();
          },
        },
        denyReason,
        deny,
      ),
    ),
  );
  return { card, showFrozen };
}

export function approvalsPage(ctx) {
  const list = h('div', { class: 'cards' });
  const cards = new Map();
  const render = () => {
    const requests = ctx.store.approvals;
    for (const [id, shown] of cards) {
      if (!requests.some((r) => r.id === id)) {
        shown.card.remove();
        cards.delete(id);
      }
    }
    // Oldest first: the one waiting longest is on top. Cards stay as they are (with what was typed) while the list changes.
    for (const r of [...requests].sort((a, b) => a.id - b.id)) {
      if (!cards.has(r.id)) {
        const shown = approvalCard(ctx, r);
        cards.set(r.id, shown);
        list.append(shown.card);
      }
    }
    if (requests.length === 0 && !list.querySelector('.empty')) list.append(empty('Nothing is waiting for you. New requests appear here as agents make them.'));
    if (requests.length > 0) list.querySelector('.empty')?.remove();
  };
  render();
  ctx.listen('approvals', render);
  ctx.listen('status', () => {
    for (const shown of cards.values()) shown.showFrozen();
  });
  return h('div', { class: 'page' }, h('h1', {}, 'Pending approvals'), h('p', { class: 'lede' }, 'Each request is one statement, for one agent, good once. What runs is exactly what you approve; a larger impact at run time aborts it.'), list);
}

// ---------------------------------------------------------------------------
// Freeze

function describeScope(f) {
  return f.scope.kind === 'global' ? 'all agents' : `agent ${f.scope.agent}`;
}

/** A freeze switch with a reason field: for all agents (agent undefined) or one. */
export function freezeSwitch(ctx, agent) {
  const frozen = agent === undefined ? ctx.store.globalFreeze() : ctx.store.agentFreeze(agent);
  const reason = h('input', { name: 'reason', required: true, maxlength: '2000', placeholder: agent === undefined ? 'Why stop every agent?' : `Why stop ${agent}?`, 'aria-label': 'Reason for the freeze' });
  const totp = totpInput(ctx, 'unfreeze-totp');
  if (frozen) {
    const lift = h('button', { class: 'secondary', type: 'submit', dataset: { test: agent === undefined ? 'unfreeze-all' : `unfreeze-${agent}` } }, agent === undefined ? 'Lift the freeze on all agents' : `Unfreeze ${agent}`);
    return h(
      'form',
      {
        class: 'switch on',
        dataset: { key: `switch-${agent ?? '*'}` },
        onsubmit: async (e) => {
          e.preventDefault();
          const done = await act(ctx, lift, () => api('POST', '/v1/unfreeze', agent === undefined ? {} : { agent }, { totp: totp?.value }));
          if (done) ctx.store.refreshStatus();
        },
      },
      h('span', { class: 'state' }, pill('FROZEN', 'bad'), ' ', frozen.reason, ' ', h('span', { class: 'meta' }, `by ${frozen.by}, `, time(frozen.at), frozen.until ? [' until ', time(frozen.until)] : '')),
      totp,
      lift,
    );
  }
  const go = h('button', { class: 'danger', type: 'submit', dataset: { test: agent === undefined ? 'freeze-all' : `freeze-${agent}` } }, agent === undefined ? 'Freeze all agents' : `Freeze ${agent}`);
  return h(
    'form',
    {
      class: 'switch off',
      dataset: { key: `switch-${agent ?? '*'}` },
      onsubmit: async (e) => {
        e.preventDefault();
        const done = await act(ctx, go, () => api('POST', '/v1/freeze', agent === undefined ? { reason: reason.value } : { agent, reason: reason.value }));
        if (done) ctx.store.refreshStatus();
      },
    },
    reason,
    go,
  );
}

function windowSchedule(w) {
  if (w.weekly) return `every ${w.weekly.days.join(', ')} ${w.weekly.start}–${w.weekly.end} (${w.weekly.timezone})`;
  return [time(w.from), ' – ', time(w.to)];
}

export function freezePage(ctx) {
  const body = h('div', {});
  let drawn = null;
  const render = () => {
    const status = ctx.store.status ?? { manual: [], windows: [] };
    // Redrawn only when what it shows changed, and then keeping what was typed.
    const signature = JSON.stringify([status, ctx.store.windows, ctx.store.agentNames()]);
    if (signature === drawn) return;
    drawn = signature;
    keepingInputs(body, () => replace(
      body,
      section('All agents', h('p', { class: 'lede' }, 'While a freeze holds, no agent statement changes data or schema: no policy, approval or retry gets past it. Reads go on.'), freezeSwitch(ctx, undefined)),
      section('One agent', h('div', { class: 'switches' }, ctx.store.agentNames().map((a) => h('div', { class: 'agent-switch' }, h('strong', {}, a), freezeSwitch(ctx, a))))),
      section(
        'Freeze windows',
        status.windows.length === 0 ? empty('No scheduled window is in force now.') : h('ul', { class: 'windows' }, status.windows.map((w) => h('li', {}, pill('IN FORCE', 'bad'), ' ', h('strong', {}, w.window), ` — ${w.reason} (${w.agents === null ? 'all agents' : w.agents.join(', ')}) until `, time(w.until), ' ', endWindowButton(ctx, w.window)))),
        ctx.store.windows.length === 0
          ? empty('No freeze windows are configured (freeze_windows in the config).')
          : h('table', { class: 'grid' }, h('thead', {}, h('tr', {}, h('th', {}, 'Window'), h('th', {}, 'When'), h('th', {}, 'Agents'), h('th', {}, 'Reason'))), h('tbody', {}, ctx.store.windows.map((w) => h('tr', {}, h('td', {}, w.name), h('td', {}, windowSchedule(w)), h('td', {}, w.agents === null ? 'all' : w.agents.join(', ')), h('td', {}, w.reason))))),
      ),
      section('Freezes in force', status.manual.length === 0 ? empty('None.') : h('ul', {}, status.manual.map((f) => h('li', {}, h('strong', {}, describeScope(f)), `: ${f.reason} — by ${f.by}, `, time(f.at))))),
    ));
  };
  render();
  ctx.listen('status', render);
  ctx.listen('agents', render);
  return h('div', { class: 'page' }, h('h1', {}, 'Freeze'), body);
}

function endWindowButton(ctx, name) {
  const totp = totpInput(ctx, 'window-totp');
  const b = h('button', { class: 'secondary small', type: 'submit' }, 'End early');
  return h(
    'form',
    {
      class: 'inline',
      onsubmit: async (e) => {
        e.preventDefault();
        const done = await act(ctx, b, () => api('POST', '/v1/unfreeze', { window: name }, { totp: totp?.value }));
        if (done) ctx.store.refreshStatus();
      },
    },
    totp,
    b,
  );
}

// ---------------------------------------------------------------------------
// Live activity

const EVENT_TONE = { statement: 'muted', 'approval-request': 'warn', approve: 'ok', deny: 'bad', freeze: 'bad', unfreeze: 'ok', tripwire: 'bad', breach: 'bad', undo: 'info', 'write-intent': 'info', 'auth-failed': 'bad' };

/** The agent a record is about, and the admin who acted, when there is one. */
function who(r) {
  const by = r.detail && typeof r.detail.by === 'string' ? r.detail.by : null;
  if (r.agent && by) return [r.agent, h('span', { class: 'by' }, ` by ${by}`)];
  return r.agent ?? (by ? `by ${by}` : '—');
}

function eventRow(r) {
  const decision = r.decision ? pill(r.decision, r.decision === 'allow' ? 'ok' : 'bad') : null;
  return h(
    'li',
    { class: `event ev-${r.event}`, dataset: { test: 'event', seq: String(r.seq), agent: r.agent ?? '', decision: r.decision ?? '', event: r.event } },
    h('span', { class: 'when' }, time(r.at)),
    h('span', { class: 'who' }, who(r)),
    h('span', { class: 'what' }, pill(r.event, EVENT_TONE[r.event] ?? 'muted'), ' ', decision, r.rule ? h('span', { class: 'rule' }, ` ${r.rule}`) : null),
    h('span', { class: 'text' }, r.text ? highlightSql(r.text.length > 400 ? `${r.text.slice(0, 400)}…` : r.text) : (r.reason ?? '')),
    r.text && r.reason ? h('span', { class: 'why' }, r.reason) : null,
  );
}

export function activityPage(ctx) {
  const agent = h('select', { name: 'agent', 'aria-label': 'Agent' }, h('option', { value: '' }, 'All agents'), ctx.store.agentNames().map((a) => h('option', { value: a }, a)));
  const decision = h('select', { name: 'decision', 'aria-label': 'Decision' }, h('option', { value: '' }, 'Any decision'), h('option', { value: 'allow' }, 'Allowed'), h('option', { value: 'deny' }, 'Refused'));
  const list = h('ol', { class: 'events' });
  const shown = (r) => (agent.value === '' || r.agent === agent.value) && (decision.value === '' || r.decision === decision.value);
  let records = [];
  const render = () => replace(list, records.filter(shown).slice(0, 300).map(eventRow));
  agent.addEventListener('change', render);
  decision.addEventListener('change', render);
  api('GET', '/v1/audit?limit=200')
    .then((r) => {
      const seen = new Set(records.map((x) => x.seq));
      records = [...records, ...r.records.filter((x) => !seen.has(x.seq))].sort((a, b) => b.seq - a.seq);
      render();
    })
    .catch((err) => ctx.toast(err.message, 'bad'));
  ctx.listen('audit', (record) => {
    records.unshift(record);
    if (records.length > 1000) records.length = 1000;
    if (shown(record)) {
      list.prepend(eventRow(record));
      while (list.children.length > 300) list.lastChild.remove();
    }
  });
  return h('div', { class: 'page' }, h('h1', {}, 'Live activity'), h('p', { class: 'lede' }, 'Statements and decisions as they happen (newest first).'), h('div', { class: 'filters' }, agent, decision, h('span', { class: 'live' }, '● live')), list);
}

// ---------------------------------------------------------------------------
// Changes and undo

function planTable(result) {
  return h(
    'table',
    { class: 'grid' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Table'), h('th', {}, 'Delete'), h('th', {}, 'Set back'), h('th', {}, 'Insert again'))),
    h('tbody', {}, result.tables.map((t) => h('tr', {}, h('td', {}, h('code', {}, t.table)), h('td', {}, t.delete), h('td', {}, t.update), h('td', {}, t.insert)))),
  );
}

function conflictList(conflicts) {
  if (conflicts.length === 0) return h('p', { class: 'notice ok' }, 'No row was changed again since: undo puts every row back as it was.');
  return h(
    'div',
    { class: 'notice bad' },
    h('p', {}, `${plural(conflicts.length, 'row')} changed again after this change. Undo stops rather than overwrite them, unless forced.`),
    h('ul', {}, conflicts.slice(0, 20).map((c) => h('li', {}, h('code', {}, c.table), ' key ', h('code', {}, c.key), ': expected ', h('code', {}, c.expected ?? '(no row)'), ', found ', h('code', {}, c.found ?? '(no row)')))),
  );
}

function changeRow(ctx, change, reload) {
  const panel = h('div', { class: 'undo-panel' });
  const preview = h('button', { class: 'secondary small', dataset: { test: 'undo-preview' } }, 'Undo…');
  preview.addEventListener('click', async () => {
    const plan = await act(ctx, preview, () => api('POST', '/v1/undo', { changes: [change.id], dryRun: true }));
    if (!plan) return;
    const confirm = h('button', { class: 'danger', dataset: { test: 'undo-confirm' } }, plan.conflicts.length > 0 ? 'Undo anyway, overwriting those rows' : 'Confirm undo');
    const cancel = h('button', { class: 'secondary' }, 'Cancel');
    cancel.addEventListener('click', () => replace(panel));
    confirm.addEventListener('click', async () => {
      const done = await act(ctx, confirm, async () => {
        const r = await api('POST', '/v1/undo', { changes: [change.id], force: plan.conflicts.length > 0 }, { accept: [409], withStatus: true });
        if (r.status === 409) {
          replace(panel, conflictList(r.body.conflicts ?? []));
          throw new ApiError(409, r.body);
        }
        return { message: `Undone: ${plural(r.body.tables.reduce((n, t) => n + t.delete + t.update + t.insert, 0), 'row')} put back (undo change ${r.body.undoChangeId}).` };
      });
      if (done) {
        replace(panel);
        reload();
      }
    });
    replace(panel, h('h4', {}, 'Dry run: what undo would do'), planTable(plan), conflictList(plan.conflicts), h('div', { class: 'actions' }, confirm, cancel));
  });
  const rows = Object.values(change.tables).reduce((a, b) => a + b, 0);
  const stateTone = { committed: 'ok', undone: 'muted', pending: 'warn', aborted: 'muted' }[change.state] ?? 'muted';
  return h(
    'article',
    { class: 'card change', dataset: { test: 'change', id: change.id } },
    h(
      'header',
      {},
      h('h3', {}, change.kind === 'undo' ? `Undo by ${change.by}` : h('span', { class: 'agent' }, change.agent ?? '?'), ' ', pill(change.state, stateTone), change.conflicts ? [' ', pill(`${plural(change.conflicts, 'row')} changed since`, 'bad')] : null),
      h('span', { class: 'meta' }, time(change.at), ` · txid ${change.txid} · ${plural(rows, 'row')} in `, Object.keys(change.tables).map((t) => h('code', {}, t))),
    ),
    h('pre', { class: 'statement' }, highlightSql(change.statement)),
    change.state === 'committed' ? h('div', { class: 'actions' }, preview) : change.undoneBy ? h('p', { class: 'meta' }, `Undone by change ${change.undoneBy}.`) : null,
    panel,
  );
}

export function changesPage(ctx) {
  const agent = h('select', { name: 'agent', 'aria-label': 'Agent' }, h('option', { value: '' }, 'All agents'), ctx.store.agentNames().map((a) => h('option', { value: a }, a)));
  const list = h('div', { class: 'cards' });
  /** Cards by change id, with what they show: a reload keeps a card that did not change (an open undo preview with it). */
  let cards = new Map();
  const load = async () => {
    try {
      const r = await api('GET', `/v1/changes?check=true${agent.value ? `&agent=${encodeURIComponent(agent.value)}` : ''}`);
      const changes = [...r.changes].reverse().slice(0, 200);
      const next = new Map();
      for (const c of changes) {
        const signature = JSON.stringify(c);
        const old = cards.get(c.id);
        next.set(c.id, old !== undefined && old.signature === signature ? old : { signature, el: changeRow(ctx, c, load) });
      }
      cards = next;
      replace(list, changes.length === 0 ? empty('The journal holds no change of an agent yet.') : [...next.values()].map((x) => x.el));
    } catch (err) {
      replace(list, empty(err.message));
    }
  };
  agent.addEventListener('change', load);
  void load();
  // A write is journalled around its write-intent record and settled at its commit: reload a little after.
  let timer = null;
  ctx.listen('audit', (r) => {
    if (r.event !== 'undo' && r.event !== 'write-intent' && r.event !== 'statement') return;
    clearTimeout(timer);
    timer = setTimeout(load, 700);
  });
  return h('div', { class: 'page' }, h('h1', {}, 'Changes'), h('p', { class: 'lede' }, 'Every agent write, journalled before it committed. Undo shows its dry run first; rows changed again since are conflicts.'), h('div', { class: 'filters' }, agent), list);
}

// ---------------------------------------------------------------------------
// Agents

function meter(used, limit, label) {
  const share = limit > 0 ? Math.min(1, used / limit) : 0;
  return h('div', { class: 'meter-row' }, h('span', { class: 'label' }, label), h('meter', { min: '0', max: String(limit), value: String(used), low: String(limit * 0.5), high: String(limit * 0.8), optimum: '0' }), h('span', { class: `num ${share >= 0.8 ? 'bad' : ''}` }, `${used} / ${limit}`));
}

function ruleText(r) {
  return [
    h('code', {}, `rules[${r.index}]`),
    ' ',
    pill(r.decision, r.decision === 'allow' ? 'ok' : r.decision === 'deny' ? 'bad' : 'warn'),
    ` ${r.kinds === null ? 'every kind' : r.kinds.join(', ')} on ${r.tables === null ? 'any table' : r.tables.join(', ')}`,
    r.agents === null ? ' (every agent)' : '',
    r.note ? h('span', { class: 'hint' }, ` — ${r.note}`) : null,
  ];
}

export function agentsPage(ctx) {
  const body = h('div', { class: 'cards' });
  let drawn = null;
  const render = () => {
    const signature = JSON.stringify([ctx.store.agents, ctx.store.status]);
    if (signature === drawn) return;
    drawn = signature;
    keepingInputs(body, () => replace(
      body,
      ctx.store.agents.map((a) =>
        h(
          'article',
          { class: `card agent-card ${a.frozen ? 'frozen' : ''}`, dataset: { test: 'agent', name: a.name } },
          h('header', {}, h('h3', {}, a.name, ' ', pill(a.profile, 'info'), a.frozen ? [' ', pill('FROZEN', 'bad')] : null), h('span', { class: 'meta' }, `database ${a.database}`, a.groups?.length ? ` · groups ${a.groups.join(', ')}` : '', ` · at most ${a.maxSessions} sessions`)),
          a.frozen ? h('p', { class: 'notice bad' }, a.frozen) : null,
          freezeSwitch(ctx, a.name),
          a.limits
            ? h(
                'div',
                { class: 'meters' },
                h('h4', {}, 'Budgets used'),
                meter(a.used.writesLastMinute, a.limits.writesPerMinute, 'Writes, last minute'),
                meter(a.used.rowsLastHour, a.limits.rowsPerHour, 'Rows changed, last hour'),
                h('p', { class: 'meta' }, `At most ${plural(a.limits.maxRows, 'row')} per statement${a.limits.requireWhere ? '; UPDATE and DELETE need a WHERE' : ''}.`),
                h('h4', {}, 'Tripwire'),
                meter(a.tripwire.refusals, a.tripwire.tripsAt, `Destructive refusals, last ${Math.round(a.tripwire.windowSeconds / 60)} min`),
              )
            : null,
          h('h4', {}, 'Rules that apply'),
          a.rules?.length ? h('ol', { class: 'rules' }, a.rules.map((r) => h('li', {}, ruleText(r)))) : empty('No rule names this agent: its profile decides.'),
          a.profileDefaults
            ? h('details', {}, h('summary', {}, `Profile ${a.profile}, where no rule decides`), h('ul', { class: 'defaults' }, Object.entries(a.profileDefaults).map(([k, d]) => h('li', {}, h('code', {}, k), ' ', pill(d, d === 'allow' ? 'ok' : d === 'deny' ? 'bad' : 'warn')))))
            : null,
        ),
      ),
    ));
  };
  render();
  ctx.listen('agents', render);
  ctx.listen('status', render);
  void ctx.store.refreshAgents();
  return h('div', { class: 'page' }, h('h1', {}, 'Agents'), body);
}

// ---------------------------------------------------------------------------
// Audit

export function auditPage(ctx) {
  const q = h('input', { type: 'search', name: 'q', placeholder: 'Words in the statement, reason or rule', 'aria-label': 'Search' });
  const agent = h('select', { name: 'agent', 'aria-label': 'Agent' }, h('option', { value: '' }, 'All agents'), ctx.store.agentNames().map((a) => h('option', { value: a }, a)));
  const events = ['statement', 'approval-request', 'approve', 'deny', 'freeze', 'unfreeze', 'tripwire', 'undo', 'write-intent', 'auth-failed', 'sign-in', 'sign-out', 'connect', 'disconnect', 'startup', 'shutdown'];
  const event = h('select', { name: 'event', 'aria-label': 'Event' }, h('option', { value: '' }, 'Any event'), events.map((e) => h('option', { value: e }, e)));
  const decision = h('select', { name: 'decision', 'aria-label': 'Decision' }, h('option', { value: '' }, 'Any decision'), h('option', { value: 'allow' }, 'Allowed'), h('option', { value: 'deny' }, 'Refused'));
  const results = h('div', {});
  const verdict = h('div', { class: 'verdict', dataset: { test: 'verify-result' } });
  const search = h('button', { class: 'primary', type: 'submit' }, 'Search');
  const run = async () => {
    const p = new URLSearchParams({ limit: '200' });
    if (q.value) p.set('q', q.value);
    if (agent.value) p.set('agent', agent.value);
    if (event.value) p.set('event', event.value);
    if (decision.value) p.set('decision', decision.value);
    const r = await act(ctx, search, () => api('GET', `/v1/audit?${p}`));
    if (!r) return;
    replace(
      results,
      r.records.length === 0
        ? empty('No record matches.')
        : h(
            'table',
            { class: 'grid audit' },
            h('thead', {}, h('tr', {}, h('th', {}, '#'), h('th', {}, 'When'), h('th', {}, 'Event'), h('th', {}, 'Agent'), h('th', {}, 'Statement or reason'))),
            h('tbody', {}, r.records.map((x) => h('tr', { dataset: { test: 'audit-row' } }, h('td', {}, x.seq), h('td', {}, time(x.at)), h('td', {}, pill(x.event, EVENT_TONE[x.event] ?? 'muted'), x.decision ? [' ', pill(x.decision, x.decision === 'allow' ? 'ok' : 'bad')] : null), h('td', {}, who(x)), h('td', { class: 'text' }, x.text ? highlightSql(x.text.length > 300 ? `${x.text.slice(0, 300)}…` : x.text) : '', x.reason ? h('div', { class: 'why' }, x.reason) : null)))),
          ),
    );
  };
  const verify = h('button', { class: 'secondary', dataset: { test: 'verify' } }, 'Verify the chain');
  verify.addEventListener('click', async () => {
    replace(verdict, h('p', { class: 'meta' }, 'Reading the whole log…'));
    const r = await act(ctx, verify, () => api('GET', '/v1/audit/verify'));
    if (!r) return replace(verdict);
    replace(
      verdict,
      r.ok
        ? h('div', { class: 'notice ok' }, h('strong', {}, 'The audit log is intact: '), `${plural(r.records, 'record')}, one unbroken hash chain. Head ${r.head}. `, r.checkpoint)
        : h('div', { class: 'notice bad' }, h('strong', {}, 'The audit log is NOT intact: '), `${r.problem} (line ${r.line}; ${plural(r.records, 'record')} before it check out). `, r.checkpoint),
    );
  });
  void run();
  return h(
    'div',
    { class: 'page' },
    h('h1', {}, 'Audit'),
    section('Chain', h('p', { class: 'lede' }, 'Every statement, decision, approval, freeze and undo is on an append-only, hash-chained record.'), verify, verdict),
    section(
      'Search',
      h(
        'form',
        {
          class: 'filters',
          onsubmit: (e) => {
            e.preventDefault();
            void run();
          },
        },
        q,
        agent,
        event,
        decision,
        search,
      ),
      results,
    ),
  );
}
