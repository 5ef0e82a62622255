// The Airlock dashboard: sign-in, then a shell whose top bar always says
// whether anything is frozen and how many requests wait, with one switch
// that freezes every agent; below it the pages. Live updates arrive as
// server-sent events (GET /v1/events); the queue and the freeze state are
// also polled, so a dropped stream costs freshness, not correctness.
import { h, keepingInputs, replace, time } from './dom.js';
import { api, currentSession, onSignedOut, signIn, signOut } from './api.js';
import { activityPage, agentsPage, approvalsPage, auditPage, changesPage, freezePage } from './pages.js';

const PAGES = [
  { path: 'approvals', title: 'Approvals', render: approvalsPage },
  { path: 'freeze', title: 'Freeze', render: freezePage },
  { path: 'activity', title: 'Activity', render: activityPage },
  { path: 'changes', title: 'Changes', render: changesPage },
  { path: 'agents', title: 'Agents', render: agentsPage },
  { path: 'audit', title: 'Audit', render: auditPage },
];

const POLL_MS = 10_000;
const root = document.getElementById('app');

/** What the server said last, and who wants to know when it changes. */
function createStore() {
  const listeners = new Map();
  const store = {
    status: null,
    approvals: [],
    agents: [],
    windows: [],
    emit(kind, data) {
      for (const l of listeners.get(kind) ?? []) l(data);
    },
    listen(kind, fn) {
      if (!listeners.has(kind)) listeners.set(kind, new Set());
      listeners.get(kind).add(fn);
      return () => listeners.get(kind).delete(fn);
    },
    async refreshStatus() {
      store.status = await api('GET', '/v1/status');
      store.emit('status');
      // The agents' freeze lines follow the status.
      void store.refreshAgents();
    },
    async refreshApprovals() {
      const r = await api('GET', '/v1/approvals');
      store.approvals = r.requests;
      store.emit('approvals');
    },
    async refreshAgents() {
      const r = await api('GET', '/v1/agents');
      store.agents = r.agents;
      store.emit('agents');
    },
    async refreshWindows() {
      const r = await api('GET', '/v1/freeze-windows');
      store.windows = r.windows;
      store.emit('status');
    },
    agentNames() {
      return store.agents.map((a) => a.name);
    },
    globalFreeze() {
      return store.status?.manual.find((f) => f.scope.kind === 'global') ?? null;
    },
    agentFreeze(agent) {
      return store.status?.manual.find((f) => f.scope.kind === 'agent' && f.scope.agent === agent) ?? null;
    },
    /** Why the agent is frozen now (any cause), or null. */
    frozenCause(agent) {
      const s = store.status;
      if (!s) return null;
      const f = s.manual.find((m) => m.scope.kind === 'global' || m.scope.agent === agent);
      if (f) return `${f.scope.kind === 'global' ? 'all agents are frozen' : 'frozen'}: ${f.reason}`;
      const w = s.windows.find((x) => x.agents === null || x.agents.includes(agent));
      return w ? `freeze window ${w.window}: ${w.reason}` : null;
    },
  };
  return store;
}

// ---------------------------------------------------------------------------
// Sign-in

function signInView(message) {
  const token = h('input', { type: 'password', name: 'token', id: 'token', autocomplete: 'current-password', required: true, placeholder: 'airlock_admin_…', spellcheck: 'false' });
  const totp = h('input', { name: 'totp', id: 'totp', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6}', maxlength: '6', placeholder: 'only if configured' });
  const error = h('p', { class: 'error', role: 'alert' }, message ?? '');
  const button = h('button', { class: 'primary', type: 'submit' }, 'Sign in');
  const form = h(
    'form',
    {
      class: 'signin',
      onsubmit: async (e) => {
        e.preventDefault();
        button.disabled = true;
        try {
          await signIn(token.value.trim(), totp.value.trim());
          token.value = '';
          void start();
        } catch (err) {
          replace(error, err.message);
          token.select();
        } finally {
          button.disabled = false;
        }
      },
    },
    h('div', { class: 'brand big' }, h('img', { src: '/ui/icon.svg', alt: '', width: '40', height: '40' }), h('span', {}, 'Airlock')),
    h('p', { class: 'lede' }, 'Sign in with an admin token. Agent credentials open nothing here.'),
    h('label', { for: 'token' }, 'Admin token'),
    token,
    h('label', { for: 'totp' }, 'TOTP code'),
    totp,
    button,
    error,
    h('p', { class: 'hint' }, 'No token? As Airlock’s OS user: airlock admin token create --name <you>'),
  );
  document.title = 'Sign in · Airlock';
  replace(root, h('main', { class: 'signin-page' }, form));
  token.focus();
}

// ---------------------------------------------------------------------------
// The shell

/** The bar on every page: frozen or not, in a way that cannot be missed, and the switch. */
function freezeBanner(ctx) {
  const bar = h('div', { class: 'banner', role: 'status', dataset: { test: 'freeze-banner', key: 'banner' } });
  let drawn = null;
  const render = () => {
    // Redrawn only when the freezes changed, keeping a reason being typed.
    const signature = JSON.stringify(ctx.store.status);
    if (signature === drawn) return;
    drawn = signature;
    keepingInputs(bar, draw);
  };
  const draw = () => {
    const s = ctx.store.status;
    if (!s) return replace(bar);
    const global = ctx.store.globalFreeze();
    const globalWindow = s.windows.find((w) => w.agents === null);
    const agents = s.manual.filter((f) => f.scope.kind === 'agent');
    const windows = s.windows.filter((w) => w.agents !== null);
    if (global || globalWindow) {
      bar.className = 'banner frozen';
      bar.dataset.state = 'frozen-all';
      const why = global ? [`${global.reason} — by ${global.by}, `, time(global.at)] : [`freeze window ${globalWindow.window}: ${globalWindow.reason}, until `, time(globalWindow.until)];
      return replace(bar, h('strong', {}, '■ ALL AGENTS ARE FROZEN'), h('span', { class: 'why' }, why), global ? h('a', { href: '#/freeze', class: 'button secondary small' }, 'Lift…') : null);
    }
    if (agents.length > 0 || windows.length > 0) {
      bar.className = 'banner partial';
      bar.dataset.state = 'frozen-some';
      const names = [...agents.map((f) => f.scope.agent), ...windows.flatMap((w) => w.agents)];
      return replace(bar, h('strong', {}, `■ FROZEN: ${[...new Set(names)].join(', ')}`), h('span', { class: 'why' }, agents.map((f) => `${f.scope.agent}: ${f.reason}`).join(' · ')), quickFreeze(ctx));
    }
    bar.className = 'banner clear';
    bar.dataset.state = 'clear';
    return replace(bar, h('strong', {}, 'No freeze in force'), h('span', { class: 'why' }, 'Agents may act within their rules.'), quickFreeze(ctx));
  };
  ctx.store.listen('status', render);
  render();
  return bar;
}

/** The one-click stop: a reason, then every agent is frozen. */
function quickFreeze(ctx) {
  const reason = h('input', { name: 'reason', required: true, maxlength: '2000', placeholder: 'Reason', 'aria-label': 'Reason for freezing all agents', value: 'Stopped from the dashboard' });
  const button = h('button', { class: 'danger', type: 'submit', dataset: { test: 'freeze-all-quick' } }, 'Freeze all agents');
  return h(
    'form',
    {
      class: 'quick-freeze',
      onsubmit: async (e) => {
        e.preventDefault();
        button.disabled = true;
        try {
          const r = await api('POST', '/v1/freeze', { reason: reason.value });
          ctx.toast(r.message, 'ok');
          await ctx.store.refreshStatus();
        } catch (err) {
          ctx.toast(err.message, 'bad');
        } finally {
          button.disabled = false;
        }
      },
    },
    reason,
    button,
  );
}

function nav(ctx) {
  const links = PAGES.map((p) => h('a', { href: `#/${p.path}`, dataset: { page: p.path } }, p.title));
  const badge = h('span', { class: 'badge', dataset: { test: 'pending-count' } });
  links[0].append(' ', badge);
  const render = () => {
    const n = ctx.store.approvals.length;
    badge.textContent = String(n);
    badge.className = n > 0 ? 'badge hot' : 'badge';
    document.title = `${n > 0 ? `(${n}) ` : ''}${ctx.store.globalFreeze() ? 'FROZEN · ' : ''}Airlock`;
  };
  ctx.store.listen('approvals', render);
  ctx.store.listen('status', render);
  render();
  return { el: h('nav', { class: 'tabs' }, links), links };
}

function toaster() {
  const box = h('div', { class: 'toasts', 'aria-live': 'assertive' });
  const toast = (message, tone = 'ok') => {
    const t = h('div', { class: `toast ${tone}`, role: tone === 'bad' ? 'alert' : 'status' }, message);
    box.append(t);
    setTimeout(() => t.remove(), tone === 'bad' ? 12_000 : 5_000);
  };
  return { box, toast };
}

let stopCurrent = null;

async function start() {
  stopCurrent?.();
  let session;
  try {
    session = await currentSession();
  } catch (err) {
    replace(root, h('main', { class: 'signin-page' }, h('p', { class: 'error' }, err.message)));
    return;
  }
  if (session === null) return signInView();

  const store = createStore();
  const { box, toast } = toaster();
  const cleanups = [];
  /** Page listeners, dropped when the page changes. */
  let pageCleanups = [];
  const ctx = {
    session,
    store,
    toast,
    listen(kind, fn) {
      pageCleanups.push(store.listen(kind, fn));
    },
  };

  const main = h('main', { class: 'content' });
  const navigation = nav(ctx);
  const signOutButton = h('button', { class: 'secondary small', dataset: { test: 'sign-out' } }, 'Sign out');
  signOutButton.addEventListener('click', async () => {
    try {
      await signOut();
    } catch (err) {
      toast(err.message, 'bad');
      return;
    }
    stop();
    signInView('You are signed out.');
  });
  const live = h('span', { class: 'live-state', title: 'Live updates' }, '○');
  replace(
    root,
    h('header', { class: 'top' }, h('a', { class: 'brand', href: '#/approvals' }, h('img', { src: '/ui/icon.svg', alt: '', width: '26', height: '26' }), h('span', {}, 'Airlock')), navigation.el, h('div', { class: 'who' }, live, h('span', {}, session.admin), signOutButton)),
    freezeBanner(ctx),
    main,
    box,
  );

  const route = () => {
    for (const c of pageCleanups) c();
    pageCleanups = [];
    const path = location.hash.replace(/^#\/?/, '') || 'approvals';
    const page = PAGES.find((p) => p.path === path) ?? PAGES[0];
    for (const a of navigation.links) a.classList.toggle('active', a.dataset.page === page.path);
    replace(main, page.render(ctx));
    main.dataset.page = page.path;
  };

  const refreshAll = () =>
    Promise.all([store.refreshStatus(), store.refreshApprovals(), store.refreshAgents(), store.refreshWindows()]).catch((err) => toast(err.message, 'bad'));
  await refreshAll();
  window.addEventListener('hashchange', route);
  cleanups.push(() => window.removeEventListener('hashchange', route));
  route();

  // Live: every audit record, as it is written.
  let agentsTimer = null;
  cleanups.push(() => clearTimeout(agentsTimer));
  const events = new EventSource('/v1/events');
  events.addEventListener('open', () => {
    live.textContent = '●';
    live.className = 'live-state on';
  });
  events.addEventListener('error', () => {
    live.textContent = '○';
    live.className = 'live-state';
  });
  events.addEventListener('signed-out', () => {
    stop();
    signInView('Your session ended. Sign in again.');
  });
  events.addEventListener('audit', (e) => {
    const record = JSON.parse(e.data);
    store.emit('audit', record);
    if (['approval-request', 'approve', 'deny'].includes(record.event) || (record.event === 'statement' && record.detail && record.detail.approval !== undefined)) {
      void store.refreshApprovals().catch(() => undefined);
    }
    if (['freeze', 'unfreeze', 'tripwire'].includes(record.event)) void store.refreshStatus().catch(() => undefined);
    // Budgets move with every write: refresh the agents at most every 2 s.
    if (record.event === 'statement' && record.agent && agentsTimer === null) {
      agentsTimer = setTimeout(() => {
        agentsTimer = null;
        void store.refreshAgents().catch(() => undefined);
      }, 2000);
    }
  });
  cleanups.push(() => events.close());
  const poll = setInterval(() => {
    void Promise.all([store.refreshStatus(), store.refreshApprovals()]).catch(() => undefined);
  }, POLL_MS);
  cleanups.push(() => clearInterval(poll));

  const stop = () => {
    for (const c of pageCleanups) c();
    for (const c of cleanups) c();
    stopCurrent = null;
  };
  stopCurrent = stop;
}

onSignedOut(() => {
  if (stopCurrent === null) return;
  stopCurrent();
  signInView('Your session ended. Sign in again.');
});

void start();
