/* ringlb admin dashboard — plain JavaScript, no library, nothing fetched but the admin API of
 * the listener that served this page.
 *
 * Every 2 s it reads GET /api/v1/config, /api/v1/listeners/{l}/rules, /api/v1/target-groups,
 * /api/v1/target-groups/{tg}, /api/v1/scaling, /api/v1/deployments and /metrics, and redraws.
 * Requests/s per target are computed here from two successive reads of the Prometheus counter
 * ringlb_target_requests_total (the API has no rate).
 *
 * Access: with admin.token_file the page is opened once as /?token=...; the token is kept in
 * sessionStorage (this tab only), removed from the address bar, and sent on every API call as
 * "Authorization: Bearer". A full reload of the page then needs the ?token= link again.
 *
 * Safety: API data only ever reaches the DOM through textContent / attributes set from JS
 * (never innerHTML), and no inline script or style is used (Content-Security-Policy 'self').
 */
'use strict';

(() => {
  const POLL_MS = 2000;
  const TOKEN_KEY = 'ringlb.admin.token';

  // ---- token --------------------------------------------------------------------------------

  /* The server reads ?token= percent-decoded with '+' kept (admin.c), so no URLSearchParams
   * (which turns '+' into a space). */
  function takeToken() {
    const q = location.search.replace(/^\?/, '');
    const rest = [];
    let found = null;
    for (const part of q ? q.split('&') : []) {
      if (part.startsWith('token=') && found === null) {
        try {
          found = decodeURIComponent(part.slice(6));
        } catch (e) {
          found = part.slice(6);
        }
      } else if (part) {
        rest.push(part);
      }
    }
    try {
      if (found !== null) {
        sessionStorage.setItem(TOKEN_KEY, found);
        history.replaceState(null, '', location.pathname + (rest.length ? '?' + rest.join('&') : '') +
                             location.hash);
      }
      return found !== null ? found : sessionStorage.getItem(TOKEN_KEY);
    } catch (e) {            // storage disabled: keep it for this page view only
      return found;
    }
  }

  const token = takeToken();

  // ---- API ----------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message, what) {
      super(message);
      this.status = status;
      this.what = what;
    }
    readable() {
      if (this.status === -1)
        return `dashboard error: ${this.message}`;
      if (this.status === 0)
        return `${this.what}: the admin API cannot be reached (${this.message})`;
      let s = `${this.what}: ${this.status} ${this.message}`;
      if (this.status === 401)
        s += ' — open this page as /?token=<admin token> (the token file\'s content).';
      return s;
    }
  }

  async function api(method, path, body) {
    const headers = { 'Accept': 'application/json' };
    if (token)
      headers['Authorization'] = 'Bearer ' + token;
    const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const what = `${method} ${path}`;
    let r;
    try {
      r = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, e && e.message ? e.message : String(e), what);
    }
    const text = await r.text();
    if (!r.ok) {
      let msg = text.trim() || r.statusText;
      try {
        const j = JSON.parse(text);
        if (j && typeof j.error === 'string')
          msg = j.error;
      } catch (e) { /* not JSON: the text as it is */ }
      if (msg.length > 500)
        msg = msg.slice(0, 500) + '…';
      throw new ApiError(r.status, msg, what);
    }
    if ((r.headers.get('Content-Type') || '').startsWith('application/json')) {
      try {
        return JSON.parse(text);
      } catch (e) {
        throw new ApiError(r.status, 'invalid JSON: ' + e.message, what);
      }
    }
    return text;
  }

  const seg = (s) => encodeURIComponent(String(s));

  // ---- DOM helpers (text only) --------------------------------------------------------------

  /* h('tag.class1.class2', {attr: v, dataset: {...}, on: {click: fn}, width: '20%'}, ...children)
   * Children: strings (text nodes), numbers, nodes, arrays, null/false (skipped). */
  function h(spec, props, ...children) {
    const [tag, ...classes] = spec.split('.');
    const el = document.createElement(tag || 'div');
    if (classes.length)
      el.className = classes.join(' ');
    if (props && (typeof props !== 'object' || props instanceof Node || Array.isArray(props))) {
      children.unshift(props);
      props = null;
    }
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false)
        continue;
      if (k === 'dataset') {
        for (const [dk, dv] of Object.entries(v))
          el.dataset[dk] = String(dv);
      } else if (k === 'on') {
        for (const [ev, fn] of Object.entries(v))
          el.addEventListener(ev, fn);
      } else if (k === 'width') {
        el.style.width = v;          // CSSOM, allowed by the CSP (no style attribute)
      } else if (k === 'class') {
        el.className += (el.className ? ' ' : '') + v;
      } else if (k === 'text') {
        el.textContent = String(v);
      } else if (v === true) {
        el.setAttribute(k, '');
      } else {
        el.setAttribute(k, String(v));
      }
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const c of children) {
      if (c === null || c === undefined || c === false)
        continue;
      if (Array.isArray(c))
        append(el, c);
      else if (c instanceof Node)
        el.appendChild(c);
      else
        el.appendChild(document.createTextNode(String(c)));
    }
  }

  const $ = (id) => document.getElementById(id);

  // ---- formatting ---------------------------------------------------------------------------

  function fmtMs(ms) {
    if (ms === null || ms === undefined)
      return '—';
    if (ms < 1000)
      return `${ms} ms`;
    if (ms < 60000)
      return `${+(ms / 1000).toFixed(1)} s`;
    if (ms < 3600000)
      return `${+(ms / 60000).toFixed(1)} min`;
    return `${+(ms / 3600000).toFixed(1)} h`;
  }

  function fmtNum(v, digits = 1) {
    if (v === null || v === undefined || Number.isNaN(v))
      return '—';
    if (Number.isInteger(v))
      return v.toLocaleString('en-US');
    return v.toLocaleString('en-US', { maximumFractionDigits: digits });
  }

  function fmtRate(v) {
    if (v === null || v === undefined)
      return '—';
    return v >= 100 ? v.toFixed(0) : v.toFixed(1);
  }

  function fmtPct(v) {
    return `${+(v * 100).toFixed(1)} %`;
  }

  function fmtSeconds(s) {
    if (s === null || s === undefined)
      return '—';
    return s < 1 ? `${+(s * 1000).toFixed(1)} ms` : `${+s.toFixed(2)} s`;
  }

  /* "Target.FailedHealthChecks" as text with line-break opportunities after each dot. */
  function breakable(text) {
    const out = [];
    String(text).split('.').forEach((part, i, all) => {
      out.push(part + (i < all.length - 1 ? '.' : ''));
      if (i < all.length - 1)
        out.push(h('wbr'));
    });
    return out;
  }

  function targetKey(t) {
    return String(t.id).includes(':') ? `[${t.id}]:${t.port}` : `${t.id}:${t.port}`;
  }

  const STATE_CLASS = {
    healthy: 'ok', initial: 'info', unhealthy: 'bad', draining: 'warn', unused: 'muted',
    unavailable: 'muted',
    IN_PROGRESS: 'info', SUCCESSFUL: 'ok', ROLLED_BACK: 'bad', STOPPED: 'warn',
  };

  function badge(text, cls) {
    return h('span.badge', { class: (STATE_CLASS[text] || 'muted') + (cls ? ' ' + cls : '') }, text);
  }

  // ---- state --------------------------------------------------------------------------------

  const S = {
    data: null,              // last complete read (see refresh())
    counters: null,          // Map "tg|target" -> value, from the previous /metrics read
    countersAt: 0,           // performance.now() of that read
    rates: new Map(),        // "tg|target" -> requests/s
    pollErrors: [],          // ApiError of the last refresh
    notices: [],             // {kind: 'error'|'ok', text, id}
    paused: false,
    timer: null,
    busy: false,
    lastOk: null,            // Date of the last refresh without errors
    open: new Map(),         // <details> open state by key
    noticeSeq: 0,
  };

  // ---- /metrics parsing ---------------------------------------------------------------------

  function parseLabels(s) {
    const out = {};
    const re = /(\w+)="((?:[^"\\]|\\.)*)"/g;
    let m;
    while ((m = re.exec(s)) !== null)
      out[m[1]] = m[2].replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    return out;
  }

  function targetCounters(text) {
    const map = new Map();
    if (typeof text !== 'string')
      return null;
    for (const line of text.split('\n')) {
      if (!line.startsWith('ringlb_target_requests_total{'))
        continue;
      const close = line.lastIndexOf('}');
      if (close < 0)
        continue;
      const labels = parseLabels(line.slice(line.indexOf('{') + 1, close));
      const v = Number(line.slice(close + 1).trim().split(/\s+/)[0]);
      if (labels.target_group !== undefined && labels.target !== undefined && Number.isFinite(v))
        map.set(`${labels.target_group}|${labels.target}`, v);
    }
    return map;
  }

  function updateRates(text, now) {
    const cur = targetCounters(text);
    if (!cur)
      return;
    if (S.counters && now > S.countersAt) {
      const dt = (now - S.countersAt) / 1000;
      const rates = new Map();
      for (const [k, v] of cur) {
        const prev = S.counters.get(k);
        if (prev !== undefined && v >= prev)
          rates.set(k, (v - prev) / dt);
      }
      S.rates = rates;
    }
    S.counters = cur;
    S.countersAt = now;
  }

  // ---- polling ------------------------------------------------------------------------------

  async function refresh() {
    if (S.busy)
      return;
    S.busy = true;
    const errors = [];
    const get = async (path) => {
      try {
        return await api('GET', path);
      } catch (e) {
        errors.push(e instanceof ApiError ? e : new ApiError(0, String(e), `GET ${path}`));
        return undefined;
      }
    };
    try {
      const prev = S.data || {};
      const [cfg, groups, scaling, deployments, metrics] = await Promise.all([
        get('/api/v1/config'), get('/api/v1/target-groups'), get('/api/v1/scaling'),
        get('/api/v1/deployments'), get('/metrics'),
      ]);
      const metricsAt = performance.now();
      const config = cfg ? cfg.config : prev.config;
      const listeners = (config && config.listeners) || [];
      const groupList = groups ? groups.target_groups : prev.groups || [];
      const [rules, details] = await Promise.all([
        Promise.all(listeners.map((l) => get(`/api/v1/listeners/${seg(l.name)}/rules`))),
        Promise.all(groupList.map((g) => get(`/api/v1/target-groups/${seg(g.name)}`))),
      ]);
      const prevRules = prev.rules || new Map();
      const prevDetails = prev.details || new Map();
      const rulesMap = new Map();
      listeners.forEach((l, i) => rulesMap.set(l.name, rules[i] || prevRules.get(l.name)));
      const detailsMap = new Map();
      groupList.forEach((g, i) => detailsMap.set(g.name, details[i] || prevDetails.get(g.name)));
      if (metrics !== undefined)
        updateRates(metrics, metricsAt);
      S.data = {
        config,
        generation: cfg ? cfg.generation : prev.generation,
        groups: groupList,
        details: detailsMap,
        rules: rulesMap,
        scaling: scaling ? scaling.target_groups : prev.scaling || [],
        deployments: deployments ? deployments.deployments : prev.deployments || [],
      };
      S.pollErrors = errors;
      if (!errors.length)
        S.lastOk = new Date();
    } finally {
      S.busy = false;
    }
    render();
  }

  function schedule() {
    clearTimeout(S.timer);
    if (!S.paused)
      S.timer = setTimeout(tick, POLL_MS);
  }

  async function tick() {
    try {
      await refresh();
    } catch (e) {            // a bug of this page, not an API error: say so, loudly
      console.error('ringlb dashboard:', e);
      S.pollErrors = [new ApiError(-1, String(e && e.message ? e.message : e), 'dashboard')];
      renderMessages();
    }
    schedule();
  }

  // ---- actions ------------------------------------------------------------------------------

  function notice(kind, text) {
    const id = ++S.noticeSeq;
    S.notices.push({ kind, text, id });
    if (S.notices.length > 5)
      S.notices.shift();
    if (kind === 'ok')
      setTimeout(() => dismiss(id), 6000);
    renderMessages();
  }

  function dismiss(id) {
    S.notices = S.notices.filter((n) => n.id !== id);
    renderMessages();
  }

  /* A modal confirmation; resolves true when confirmed. */
  function confirmAction(title, text, okLabel) {
    const dlg = $('confirm');
    $('confirm-title').textContent = title;
    $('confirm-text').textContent = text;
    $('confirm-ok').textContent = okLabel;
    return new Promise((resolve) => {
      const done = (v) => {
        $('confirm-ok').removeEventListener('click', ok);
        $('confirm-cancel').removeEventListener('click', cancel);
        dlg.removeEventListener('cancel', cancel);
        if (dlg.open)
          dlg.close();
        resolve(v);
      };
      const ok = () => done(true);
      const cancel = (e) => {
        if (e)
          e.preventDefault();
        done(false);
      };
      $('confirm-ok').addEventListener('click', ok);
      $('confirm-cancel').addEventListener('click', cancel);
      dlg.addEventListener('cancel', cancel);
      dlg.showModal();
      $('confirm-cancel').focus();
    });
  }

  async function runAction(button, what, fn) {
    button.disabled = true;
    try {
      await fn();
      notice('ok', `${what}: done.`);
    } catch (e) {
      notice('error', `${what} failed — ${e instanceof ApiError ? e.readable() : e}`);
    } finally {
      button.disabled = false;
    }
    await refresh().catch(() => {});
  }

  async function stopDeployment(dep, button) {
    const ok = await confirmAction(
      `Stop deployment ${dep.id}?`,
      `The deployment of rule ${dep.listener}/${dep.rule} (${dep.from} → ${dep.to}, now ` +
        `${dep.to_percent} % to ${dep.to}) stops and rolls back: the rule's weights go back to ` +
        `what they were before it started, and sticky sessions to ${dep.to} are invalidated.`,
      'Stop and roll back');
    if (!ok)
      return;
    await runAction(button, `Stop deployment ${dep.id}`,
                    () => api('POST', `/api/v1/deployments/${seg(dep.id)}/stop`, {}));
  }

  async function deregister(group, t, button) {
    const delay = group && group.deregistration_delay_ms !== undefined
      ? fmtMs(group.deregistration_delay_ms) : 'the deregistration delay';
    const ok = await confirmAction(
      `Deregister ${targetKey(t)}?`,
      `${targetKey(t)} leaves target group ${group.name}: it gets no new requests from now on, ` +
        `requests in flight may finish during ${delay} (draining), then it is removed.`,
      'Deregister');
    if (!ok)
      return;
    await runAction(button, `Deregister ${targetKey(t)} from ${group.name}`,
                    () => api('POST', `/api/v1/target-groups/${seg(group.name)}/targets/deregister`,
                              { targets: [{ id: t.id, port: t.port }] }));
  }

  // ---- rendering ----------------------------------------------------------------------------

  /* <details> whose open state survives redraws (keyed). */
  function details(key, defaultOpen, summary, ...body) {
    const open = S.open.has(key) ? S.open.get(key) : defaultOpen;
    const d = h('details', { open: open || false, dataset: { key } }, h('summary', summary), body);
    d.addEventListener('toggle', () => S.open.set(key, d.open));
    return d;
  }

  function renderStatus() {
    const st = $('status');
    let text, kind;
    if (S.paused) {
      text = 'paused';
      kind = 'paused';
    } else if (S.pollErrors.length) {
      text = `errors — last good update ${S.lastOk ? S.lastOk.toLocaleTimeString() : 'never'}`;
      kind = 'error';
    } else {
      text = `live · updated ${S.lastOk ? S.lastOk.toLocaleTimeString() : '—'}`;
      kind = 'live';
    }
    if (S.data && S.data.generation !== undefined)
      text += ` · config generation ${S.data.generation}`;
    st.textContent = text;
    st.dataset.state = kind;
  }

  function renderMessages() {
    const box = $('messages');
    const items = [];
    for (const e of S.pollErrors)
      items.push(h('div.msg.error', { dataset: { kind: 'poll' } }, e.readable()));
    for (const n of S.notices) {
      items.push(h(`div.msg.${n.kind === 'ok' ? 'ok' : 'error'}`, { dataset: { kind: 'action' } },
                   h('span', n.text),
                   h('button.ghost.small', { type: 'button', 'aria-label': 'Dismiss',
                                             on: { click: () => dismiss(n.id) } }, '×')));
    }
    box.replaceChildren(...items);
    renderStatus();
  }

  function renderSummary() {
    const d = S.data;
    let healthy = 0, unhealthy = 0, total = 0, draining = 0;
    for (const g0 of d.groups) {
      const g = d.details.get(g0.name) || g0;      // the same read as the group's card
      for (const t of g.targets || []) {
        total++;
        if (t.state === 'healthy') healthy++;
        else if (t.state === 'unhealthy') unhealthy++;
        else if (t.state === 'draining') draining++;
      }
    }
    let rps = null;
    for (const v of S.rates.values())
      rps = (rps || 0) + v;
    const running = d.deployments.filter((x) => x.state === 'IN_PROGRESS').length;
    const tile = (label, value, cls) => h('div.tile', { class: cls },
                                          h('span.tile-value', value), h('span.tile-label', label));
    $('summary').replaceChildren(
      tile('listeners', fmtNum(((d.config && d.config.listeners) || []).length)),
      tile('target groups', fmtNum(d.groups.length)),
      tile('healthy targets', `${healthy} / ${total}`, unhealthy ? 'warn' : 'ok'),
      tile('unhealthy', fmtNum(unhealthy), unhealthy ? 'bad' : ''),
      tile('draining', fmtNum(draining), draining ? 'warn' : ''),
      tile('requests/s', fmtRate(rps)),
      tile('deployments running', fmtNum(running), running ? 'info' : ''));
  }

  function weightBars(groups, extra) {
    return h('div.weights', (groups || []).map((g) => {
      const share = g.share !== undefined ? g.share : null;
      return h('div.weight-row', { dataset: { tg: g.name } },
               h('span.weight-name', g.name),
               h('span.bar', h('span.bar-fill', { width: `${share !== null ? share * 100 : 0}%` })),
               h('span.weight-num', h('span.weight', String(g.weight)),
                 share !== null ? h('span.share', ` (${fmtPct(share)})`) : null));
    }), extra);
  }

  function renderDeployments() {
    const deps = S.data.deployments.slice();
    const box = $('deployments');
    if (!deps.length) {
      box.replaceChildren(h('p.empty', 'No deployments yet. Start one with POST /api/v1/deployments.'));
      return;
    }
    // running ones first, then the API's order
    deps.sort((a, b) => (b.state === 'IN_PROGRESS') - (a.state === 'IN_PROGRESS'));
    box.replaceChildren(...deps.map((dep) => {
      const running = dep.state === 'IN_PROGRESS';
      const total = (dep.weights || []).reduce((s, w) => s + w.weight, 0);
      const weights = (dep.weights || []).map((w) => ({ ...w, share: total ? w.weight / total : 0 }));
      const readings = dep.alarm_readings || [];
      const breaches = readings.filter((r) => r.breach).length;
      const head = h('span.dep-head',
                     h('span.dep-id', dep.id), badge(dep.state, 'dep-state'),
                     h('span.dep-what', `${dep.listener}/${dep.rule} · ${dep.from} → ${dep.to} · ${dep.strategy}`),
                     h('span.dep-pct', `${dep.to_percent} % to ${dep.to}`));
      const progress = h('div.progress', { role: 'progressbar', 'aria-valuemin': 0,
                                           'aria-valuemax': 100, 'aria-valuenow': dep.to_percent },
                         h('span.bar-fill', { width: `${Math.max(0, Math.min(100, dep.to_percent))}%` }));
      const steps = h('div.scroll', h('table.compact',
                      h('thead', h('tr', h('th', 'at'), h('th', `% to ${dep.to}`), h('th', 'event'))),
                      h('tbody', (dep.history || []).map((s) => h('tr',
                        h('td.at', `+${fmtMs(s.at_ms)}`), h('td.num', String(s.to_percent)), h('td', s.event))))));
      const shown = readings.slice(-10);
      const alarm = readings.length
        ? h('div.scroll', h('table.compact',
            h('thead', h('tr', h('th', 'at'), h('th.num', 'requests'), h('th.num', 'errors'),
                         h('th.num', 'rate'), h('th', h('span.sr', 'verdict')))),
            h('tbody', shown.map((r) => h('tr', { class: r.breach ? 'breach' : '' },
              h('td.at', `+${fmtMs(r.at_ms)}`), h('td.num', fmtNum(r.requests)), h('td.num', fmtNum(r.errors)),
              h('td.num', fmtPct(r.error_rate)),
              h('td.verdict', r.breach ? 'BREACH' : r.counted ? 'ok' : 'not counted'))))))
        : h('p.empty', 'No alarm period has ended yet.');
      const actions = running
        ? h('div.actions', h('button.danger.stop', { type: 'button', dataset: { id: dep.id },
                                                     on: { click: (e) => stopDeployment(dep, e.currentTarget) } },
                             'Stop and roll back'))
        : null;
      const body = [
        dep.reason ? h('p.reason', `Reason: ${dep.reason}`) : null,
        progress,
        h('div.dep-grid',
          h('div', h('h4', 'Current weights'), weightBars(weights)),
          h('div', h('h4', 'Steps'), steps),
          h('div', h('h4', `Alarm readings${readings.length > shown.length ? ` (last ${shown.length} of ${readings.length})` : ''}${breaches ? ` · ${breaches} breach${breaches > 1 ? 'es' : ''}` : ''}`), alarm)),
        actions,
      ];
      const card = h('article.card.deployment', { dataset: { deployment: dep.id, state: dep.state } });
      if (running)
        append(card, [head, body]);
      else
        card.appendChild(details(`dep:${dep.id}`, false, head, body));
      return card;
    }));
  }

  function metricTiles(m, scal) {
    if (!m)
      return null;
    const cells = [
      ['requests (window)', fmtNum(m.RequestCount)],
      ['RequestCountPerTarget', fmtNum(m.RequestCountPerTarget)],
      ['2XX', fmtNum(m.HTTPCode_Target_2XX_Count)],
      ['3XX', fmtNum(m.HTTPCode_Target_3XX_Count)],
      ['4XX', fmtNum(m.HTTPCode_Target_4XX_Count)],
      ['5XX', fmtNum(m.HTTPCode_Target_5XX_Count)],
      ['ELB 4XX / 5XX', `${fmtNum(m.HTTPCode_ELB_4XX_Count)} / ${fmtNum(m.HTTPCode_ELB_5XX_Count)}`],
      ['response p50 / p99', `${fmtSeconds(m.TargetResponseTime_p50)} / ${fmtSeconds(m.TargetResponseTime_p99)}`],
    ];
    return h('div.metrics',
             h('p.caption', `Last complete ${fmtNum(m.WindowSeconds, 1)} s window`),
             h('dl.kv', cells.map(([k, v]) => h('div', h('dt', k), h('dd', v)))));
  }

  function scalingBlock(sc) {
    if (!sc)
      return null;
    const cd = sc.cooldown || {};
    const cooldowns = [];
    if (cd.scale_out_active)
      cooldowns.push(`scale-out cooldown ${fmtNum(cd.scale_out_remaining_seconds)} s left`);
    if (cd.scale_in_active)
      cooldowns.push(`scale-in cooldown ${fmtNum(cd.scale_in_remaining_seconds)} s left`);
    return h('div.scaling', { dataset: { scaling: sc.target_group } },
             h('h4', 'Scaling advice'),
             h('dl.kv',
               h('div', h('dt', 'RequestCountPerTarget'),
                 h('dd', `${fmtNum(sc.metric_value)} (target ${fmtNum(sc.target_value)})`)),
               h('div', h('dt', 'targets now → desired'),
                 h('dd.desired', `${sc.current ?? '—'} → ${sc.desired ?? '—'} (min ${sc.min}, max ${sc.max})`)),
               h('div', h('dt', 'action'), h('dd', sc.action || '—'))),
             h('p.reason', sc.reason || ''),
             cooldowns.length ? h('p.caption', cooldowns.join(' · ')) : null);
  }

  function renderGroups() {
    const d = S.data;
    const box = $('groups');
    if (!d.groups.length) {
      box.replaceChildren(h('p.empty', 'No target groups.'));
      return;
    }
    const scaling = new Map(d.scaling.map((s) => [s.target_group, s]));
    box.replaceChildren(...d.groups.map((g0) => {
      const g = d.details.get(g0.name) || g0;
      const targets = g.targets || [];
      let groupRate = null;
      const rows = targets.map((t) => {
        const key = targetKey(t);
        const rate = S.rates.get(`${g.name}|${key}`);
        if (rate !== undefined)
          groupRate = (groupRate || 0) + rate;
        const canDereg = t.state !== 'draining';
        return h('tr', { dataset: { target: `${g.name}/${key}`, state: t.state } },
                 h('td.target', { 'data-label': 'target' }, key),
                 h('td.state', { 'data-label': 'state' }, badge(t.state)),
                 h('td.reason', { 'data-label': 'reason' },
                   t.reason ? h('span.code', breakable(t.reason)) : '—',
                   t.description ? h('span.desc', t.description) : null),
                 h('td.num.inflight', { 'data-label': 'in flight' }, fmtNum(t.in_flight)),
                 h('td.num.rps', { 'data-label': 'req/s' }, fmtRate(rate)),
                 h('td.act', { 'data-label': '' },
                   canDereg ? h('button.danger.small.dereg', {
                     type: 'button', 'aria-label': `Deregister ${key} from ${g.name}`,
                     on: { click: (e) => deregister(g, t, e.currentTarget) } }, 'Deregister') : null));
      });
      const hc = g.health_check || {};
      const hcText = hc.enabled
        ? `health ${hc.protocol || 'HTTP'} ${hc.path} every ${fmtMs(hc.interval_ms)}, timeout ${fmtMs(hc.timeout_ms)}, ` +
          `${hc.healthy_threshold}↑/${hc.unhealthy_threshold}↓, matcher ${hc.matcher}`
        : 'health checks disabled';
      const table = targets.length
        ? h('div.scroll', h('table.targets',
            h('thead', h('tr', h('th', 'target'), h('th', 'state'), h('th', 'reason'),
                         h('th.num', 'in flight'), h('th.num', 'req/s'), h('th', h('span.sr', 'actions')))),
            h('tbody', rows)))
        : h('p.empty', 'No registered targets.');
      return h('article.card.group', { dataset: { group: g.name } },
               h('div.card-head', h('h3', g.name), h('span.rate', `${fmtRate(groupRate)} req/s`)),
               h('p.caption', `${g.algorithm || ''} · port ${g.port} · deregistration delay ${fmtMs(g.deregistration_delay_ms)} · ${hcText}`),
               table,
               h('div.group-body', metricTiles(g.metrics), scalingBlock(scaling.get(g.name))));
    }));
  }

  function conditionText(c) {
    if (!c || !Object.keys(c).length)
      return '(always)';
    const parts = [];
    for (const [k, v] of Object.entries(c)) {
      if (k === 'http_header')
        for (const x of v) parts.push(`header ${x.name}: ${(x.values || []).join(' | ')}`);
      else if (k === 'query_string')
        for (const x of v) parts.push(`query ${x.key !== undefined ? x.key + '=' : ''}${x.value}`);
      else if (Array.isArray(v))
        parts.push(`${k.replace(/_/g, ' ')}: ${v.join(' | ')}`);
      else
        parts.push(`${k}: ${JSON.stringify(v)}`);
    }
    return parts.join(' AND ');
  }

  function actionNode(listener, priority, a) {
    if (!a)
      return '—';
    if (a.forward) {
      const f = a.forward;
      const cfgNote = f.runtime_weights && f.configured_target_groups
        ? h('p.caption', `runtime weights (file: ${f.configured_target_groups.map((x) => `${x.name} ${x.weight}`).join(', ')})`)
        : null;
      return h('div.forward', { dataset: { forward: `${listener}/${priority}` } },
               h('span.action-kind', 'forward'),
               f.stickiness && f.stickiness.enabled ? h('span.badge.muted', `sticky ${f.stickiness.duration}`) : null,
               weightBars(f.target_groups), cfgNote);
    }
    if (a.redirect) {
      const r = a.redirect;
      const url = `${(r.protocol || '#{protocol}').toLowerCase()}://${r.host || '#{host}'}` +
        `${r.port ? ':' + r.port : ''}${r.path || '/#{path}'}${r.query ? '?' + r.query : ''}`;
      return h('div', h('span.action-kind', 'redirect'), ` ${(r.status_code || '').replace('HTTP_', '')} → ${url}`);
    }
    if (a.fixed_response) {
      const fr = a.fixed_response;
      return h('div', h('span.action-kind', 'fixed response'),
               ` ${fr.status_code}${fr.content_type ? ' ' + fr.content_type : ''}` +
               `${fr.message_body !== undefined ? ' “' + String(fr.message_body).slice(0, 80) + '”' : ''}`);
    }
    return h('code', JSON.stringify(a));
  }

  function renderListeners() {
    const d = S.data;
    const listeners = (d.config && d.config.listeners) || [];
    const box = $('listeners');
    if (!listeners.length) {
      box.replaceChildren(h('p.empty', 'No listeners.'));
      return;
    }
    box.replaceChildren(...listeners.map((l) => {
      const r = d.rules.get(l.name);
      const rules = r ? [...(r.rules || []), ...(r.default_action ? [r.default_action] : [])] : [];
      const rows = rules.map((rule) => h('tr', { dataset: { rule: `${l.name}/${rule.priority}` } },
        h('td.prio', { 'data-label': 'priority' }, String(rule.priority)),
        h('td.cond', { 'data-label': 'conditions' },
          rule.priority === 'default' ? '(no rule matched)' : conditionText(rule.conditions)),
        h('td.action', { 'data-label': 'action' }, actionNode(l.name, rule.priority, rule.action))));
      return h('article.card.listener', { dataset: { listener: l.name } },
               h('div.card-head', h('h3', l.name),
                 h('span.caption', `${l.protocol} ${l.listen}${l.tls && l.tls.security_policy ? ' · ' + l.tls.security_policy : ''}`)),
               r ? h('table.rules',
                     h('thead', h('tr', h('th', 'priority'), h('th', 'conditions'), h('th', 'action'))),
                     h('tbody', rows))
                 : h('p.empty', 'Rules not available.'));
    }));
  }

  function render() {
    renderMessages();
    if (!S.data)
      return;
    S.renders = (S.renders || 0) + 1;
    document.body.dataset.renders = String(S.renders);   // lets tests wait for a fresh redraw
    renderSummary();
    renderDeployments();
    renderGroups();
    renderListeners();
  }

  // ---- start --------------------------------------------------------------------------------

  function setPaused(p) {
    S.paused = p;
    const b = $('pause');
    b.textContent = p ? 'Resume' : 'Pause';
    b.setAttribute('aria-pressed', String(p));
    renderStatus();
    if (p)
      clearTimeout(S.timer);
    else
      tick();
  }

  function start() {
    $('pause').addEventListener('click', () => setPaused(!S.paused));
    tick();
  }

  if (document.readyState === 'loading')
    document.addEventListener('DOMContentLoaded', start);
  else
    start();
})();
