/* dashboard_e2e.js — drives Debian's chromium (headless, /usr/bin/chromium) with playwright-core
 * against a running ringlb admin listener and checks the dashboard like an operator would.
 *
 * Started by test_dashboard.py, which owns the processes (backends, ringlb, a paced load on
 * the listener) and passes what this script needs as JSON in RINGLB_DASH_TEST:
 *   mode        "token": the full scenario below; "plain": no token_file, page loads and shows data
 *   admin       "http://127.0.0.1:PORT"
 *   token       the admin token (mode "token")
 *   victim      {"group", "key", "pid"}: a healthy target whose backend process this script kills
 *   targets     ["ga/127.0.0.1:P", ...]: rows expected healthy at the start
 *   token_file  the admin token file (mode "token"; rewritten at the end)
 *   artifacts   directory for screenshots
 * Scenario (mode "token"): / without the token is 401; /?token= loads with no console error;
 * the token leaves the address bar; every target healthy; requests/s appear; kill the victim's
 * backend -> its row turns unhealthy; a canary deployment's weights move 0 -> 20 -> 100 on the
 * page; a second deployment is stopped with the page's button (Cancel first, then confirm) and
 * the API shows it STOPPED with the weights restored; the victim is deregistered from the page;
 * no horizontal overflow at 1280 and 390 px; screenshots are kept; last, API errors: a stale
 * stop button (page paused, deployment stopped through the API) shows the API's 409, and after
 * the token changes (file rewritten, reload) the page shows the 401 readably.
 * Prints one line per step; exits 0 when everything passed, 1 otherwise.
 */
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const T = JSON.parse(process.env.RINGLB_DASH_TEST || '{}');
const CHROMIUM = process.env.RINGLB_CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
                       '--no-first-run', '--disable-background-networking',
                       '--disable-component-update', '--disable-sync'];
const WAIT = Number(process.env.RINGLB_DASH_WAIT_MS || 20000);   // per expectation on the page

const t0 = Date.now();
const log = (msg) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${msg}`);

function assert(cond, msg) {
  if (!cond)
    throw new Error(`assertion failed: ${msg}`);
}

async function api(method, p, body, token = T.token) {
  const headers = {};
  if (token)
    headers.Authorization = `Bearer ${token}`;
  if (body !== undefined)
    headers['Content-Type'] = 'application/json';
  const r = await fetch(T.admin + p, { method, headers,
                                       body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch (e) { /* not JSON */ }
  return { status: r.status, headers: r.headers, text, json };
}

async function apiOk(method, p, body, status = 200) {
  const r = await api(method, p, body);
  assert(r.status === status, `${method} ${p}: expected ${status}, got ${r.status} ${r.text}`);
  return r.json;
}

/* Wait until fn() (run in the page) returns a truthy value; returns it. */
async function until(page, what, fn, arg, timeout = WAIT) {
  try {
    const h = await page.waitForFunction(fn, arg, { timeout, polling: 100 });
    const v = await h.jsonValue();
    log(`ok: ${what}`);
    return v;
  } catch (e) {
    throw new Error(`timed out after ${timeout} ms waiting for: ${what}\n${e.message.split('\n')[0]}`);
  }
}

function rowSel(key) {
  return `tr[data-target="${key}"]`;
}

/* The weight of group tg in the forward action of listener/priority, as the page shows it. */
function weightOnPage(page, rule, tg) {
  return page.evaluate(([r, g]) => {
    const el = document.querySelector(`[data-forward="${r}"] [data-tg="${g}"] .weight`);
    return el ? el.textContent : null;
  }, [rule, tg]);
}

async function main() {
  const udd = fs.mkdtempSync(path.join(os.tmpdir(), 'ringlb-chromium-'));
  const problems = [];             // console errors, page errors, failed requests of the page
  let context;
  try {
    context = await chromium.launchPersistentContext(udd, {
      executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 900 }, timeout: 30000,
    });
    const page = context.pages()[0] || await context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'assert')
        problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure() && r.failure().errorText}`));
    page.on('response', (r) => {
      if (r.status() >= 400)
        problems.push(`HTTP ${r.status()} for ${r.request().method()} ${r.url()}`);
    });
    const checkClean = (when) => {
      assert(problems.length === 0, `no console errors or failed requests ${when}:\n  ${problems.join('\n  ')}`);
      log(`ok: no console errors or failed requests ${when}`);
    };

    if (T.mode === 'plain') {
      await plain(page);
      checkClean('(no token)');
      return;
    }

    // ---- access control ------------------------------------------------------------------
    {
      const other = await context.newPage();          // its own sessionStorage: no token
      for (const url of ['/', '/?token=wrong', `/?token=${encodeURIComponent(T.token)}x`]) {
        const resp = await other.goto(T.admin + url);
        assert(resp.status() === 401, `GET ${url} in the browser: 401, got ${resp.status()}`);
      }
      await other.close();
      log('ok: / without the right token is 401 in the browser');
      const r = await api('GET', '/', undefined, null);
      assert(r.status === 401 && r.json && r.json.error, `GET / without token: 401 JSON, got ${r.status}`);
      const asset = await api('GET', '/dashboard/app.js', undefined, null);
      assert(asset.status === 200, `static asset without token: ${asset.status}`);
    }

    // ---- first load ----------------------------------------------------------------------
    const resp = await page.goto(`${T.admin}/?token=${encodeURIComponent(T.token)}`);
    assert(resp.status() === 200, `GET /?token=: ${resp.status()}`);
    const hdr = resp.headers();
    assert((hdr['content-type'] || '').startsWith('text/html'), `content-type ${hdr['content-type']}`);
    assert(hdr['cache-control'] === 'no-store', `cache-control ${hdr['cache-control']}`);
    assert((hdr['content-security-policy'] || '').includes("script-src 'self'"),
           `content-security-policy ${hdr['content-security-policy']}`);
    log('ok: /?token= answers the page with no-store and a CSP');
    for (const key of T.targets)
      await until(page, `${key} shown healthy`,
                  (sel) => { const r = document.querySelector(sel); return r && r.dataset.state === 'healthy' && r.querySelector('.state').textContent === 'healthy'; },
                  rowSel(key));
    const url = page.url();
    assert(!url.includes('token'), `token removed from the address bar: ${url}`);
    assert(await page.evaluate(() => sessionStorage.getItem('ringlb.admin.token')) === T.token,
           'token kept in sessionStorage');
    log('ok: token moved from the address bar to sessionStorage');
    assert(await page.locator('#messages .msg').count() === 0, 'no error message on the page');
    await until(page, 'requests/s computed for a target',
                () => [...document.querySelectorAll('td.rps')].some((td) => parseFloat(td.textContent) > 0));
    await until(page, 'scaling advice shown', () => document.querySelector('[data-scaling="ga"] .desired'));
    assert(await weightOnPage(page, 'main/10', 'gb') === '0', 'rule 10 starts at gb weight 0');
    checkClean('after the first load');

    // ---- a target goes unhealthy ---------------------------------------------------------
    process.kill(T.victim.pid, 'SIGKILL');
    log(`killed the backend of ${T.victim.group}/${T.victim.key} (pid ${T.victim.pid})`);
    await until(page, `${T.victim.key} shown unhealthy with its reason`,
                (sel) => { const r = document.querySelector(sel); return r && r.dataset.state === 'unhealthy' && r.querySelector('.state').textContent === 'unhealthy' && /Target\./.test(r.querySelector('.reason').textContent); },
                rowSel(`${T.victim.group}/${T.victim.key}`));

    // ---- a canary's weights move on the page ---------------------------------------------
    const alarm = { max_error_rate: 0.5, datapoints: 3, period: '1s', min_requests: 5 };
    const d1 = await apiOk('POST', '/api/v1/deployments',
                           { listener: 'main', rule: 10, from: 'ga', to: 'gb', strategy: 'canary',
                             canary_percent: 20, bake: '8s', final_bake: '1s', alarm }, 201);
    log(`started canary ${d1.id} ga -> gb at 20 %`);
    const seen = ['0'];
    const watch = async (want) => {
      await until(page, `rule main/10 shows gb weight ${want}`,
                  (w) => { const el = document.querySelector('[data-forward="main/10"] [data-tg="gb"] .weight'); return el && el.textContent === w; },
                  want);
      seen.push(want);
    };
    await watch('20');
    await until(page, `deployment ${d1.id} shown IN_PROGRESS at 20 %`,
                (id) => { const c = document.querySelector(`[data-deployment="${id}"]`); return c && c.dataset.state === 'IN_PROGRESS' && /20 % to gb/.test(c.textContent); },
                d1.id);
    await page.screenshot({ path: path.join(T.artifacts, 'dashboard-canary.png'), fullPage: true });
    await watch('100');
    await until(page, `deployment ${d1.id} shown SUCCESSFUL`,
                (id) => { const c = document.querySelector(`[data-deployment="${id}"]`); return c && c.dataset.state === 'SUCCESSFUL'; },
                d1.id, 30000);
    log(`ok: weights seen on the page for gb: ${seen.join(' -> ')}`);
    const done1 = await apiOk('GET', `/api/v1/deployments/${d1.id}`);
    assert(done1.state === 'SUCCESSFUL', `API: ${d1.id} ${done1.state}`);

    // ---- stop button rolls a deployment back ---------------------------------------------
    const d2 = await apiOk('POST', '/api/v1/deployments',
                           { listener: 'main', rule: 10, from: 'gb', to: 'ga', strategy: 'canary',
                             canary_percent: 30, bake: '120s', final_bake: '1s', alarm }, 201);
    log(`started canary ${d2.id} gb -> ga at 30 % (long bake)`);
    await until(page, 'rule main/10 shows ga weight 30',
                () => { const el = document.querySelector('[data-forward="main/10"] [data-tg="ga"] .weight'); return el && el.textContent === '30'; });
    const stopSel = `[data-deployment="${d2.id}"] button.stop`;
    await page.locator(stopSel).waitFor({ state: 'visible', timeout: WAIT });
    await page.screenshot({ path: path.join(T.artifacts, 'dashboard.png'), fullPage: true });
    log(`screenshot ${path.join(T.artifacts, 'dashboard.png')}`);

    await page.locator(stopSel).click();
    await page.locator('#confirm').waitFor({ state: 'visible', timeout: 5000 });
    const dlgText = await page.locator('#confirm-text').textContent();
    assert(dlgText.includes('gb → ga'), `confirmation names the deployment: ${dlgText}`);
    await page.locator('#confirm-cancel').click();
    await page.locator('#confirm').waitFor({ state: 'hidden', timeout: 5000 });
    await new Promise((r) => setTimeout(r, 300));
    assert((await apiOk('GET', `/api/v1/deployments/${d2.id}`)).state === 'IN_PROGRESS',
           'Cancel leaves the deployment running');
    log('ok: Cancel in the confirmation leaves the deployment running');

    await page.locator(stopSel).click();
    await page.locator('#confirm').waitFor({ state: 'visible', timeout: 5000 });
    await page.locator('#confirm-ok').click();
    await until(page, `deployment ${d2.id} shown STOPPED`,
                (id) => { const c = document.querySelector(`[data-deployment="${id}"]`); return c && c.dataset.state === 'STOPPED'; },
                d2.id);
    await until(page, 'rule main/10 back to gb weight 100',
                () => { const el = document.querySelector('[data-forward="main/10"] [data-tg="gb"] .weight'); return el && el.textContent === '100'; });
    const stopped = await apiOk('GET', `/api/v1/deployments/${d2.id}`);
    assert(stopped.state === 'STOPPED', `API: ${d2.id} is ${stopped.state}`);
    const w = Object.fromEntries(stopped.weights.map((x) => [x.name, x.weight]));
    assert(w.gb === 100 && w.ga === 0, `API: weights restored to gb 100 / ga 0: ${JSON.stringify(w)}`);
    const rules = await apiOk('GET', '/api/v1/listeners/main/rules');
    const fw = rules.rules.find((r) => r.priority === 10).action.forward.target_groups;
    assert(fw.find((g) => g.name === 'gb').weight === 100 && fw.find((g) => g.name === 'ga').weight === 0,
           `API: rule 10 routes gb 100 / ga 0: ${JSON.stringify(fw)}`);
    log(`ok: the stop button rolled ${d2.id} back (API: STOPPED, gb 100 / ga 0)`);

    // ---- deregister a target from the page -----------------------------------------------
    const victimRow = rowSel(`${T.victim.group}/${T.victim.key}`);
    await page.locator(`${victimRow} button.dereg`).click();
    await page.locator('#confirm').waitFor({ state: 'visible', timeout: 5000 });
    await page.locator('#confirm-ok').click();
    await until(page, `${T.victim.key} shown draining or gone`,
                (sel) => { const r = document.querySelector(sel); return !r || r.dataset.state === 'draining'; },
                victimRow);
    const g = await apiOk('GET', `/api/v1/target-groups/${T.victim.group}`);
    const vt = g.targets.find((t) => `${t.id}:${t.port}` === T.victim.key);
    assert(!vt || vt.state === 'draining', `API: deregistered target draining or gone: ${JSON.stringify(vt)}`);
    log('ok: deregistered from the page (API agrees)');
    checkClean('after the actions');

    // ---- layout: no horizontal overflow on a desktop, then on a phone ----------------------
    {
      const [sw, iw] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
      assert(sw <= iw + 1, `no horizontal overflow at 1280 px: scrollWidth ${sw} > ${iw}`);
      log('ok: desktop layout (1280 px) without horizontal overflow');
    }
    await page.setViewportSize({ width: 390, height: 844 });
    const renders = await page.evaluate(() => Number(document.body.dataset.renders));
    await until(page, 'a redraw at phone width',
                (n) => Number(document.body.dataset.renders) > n, renders);
    const [sw, iw] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    assert(sw <= iw + 1, `no horizontal overflow at 390 px: scrollWidth ${sw} > ${iw}`);
    log('ok: phone layout (390 px) without horizontal overflow');
    await page.screenshot({ path: path.join(T.artifacts, 'dashboard-phone.png'), fullPage: true });
    checkClean('at the end');

    // ---- API errors are shown readably ---------------------------------------------------
    // Pause the page, stop a deployment behind its back, then press its (stale) stop button:
    // the API answers 409 and the page says why. (Chromium logs the 409: expected here.)
    const d3 = await apiOk('POST', '/api/v1/deployments',
                           { listener: 'main', rule: 10, from: 'gb', to: 'ga', strategy: 'canary',
                             canary_percent: 10, bake: '120s', final_bake: '1s', alarm }, 201);
    const stop3 = `[data-deployment="${d3.id}"] button.stop`;
    await page.locator(stop3).waitFor({ state: 'visible', timeout: WAIT });
    await page.locator('#pause').click();
    assert(await page.locator('#status').getAttribute('data-state') === 'paused', 'Pause pauses');
    await apiOk('POST', `/api/v1/deployments/${d3.id}/stop`, {});
    await page.locator(stop3).click();
    await page.locator('#confirm-ok').click();
    const msg409 = await until(page, 'a readable 409 message after a stale stop',
                               () => { const m = document.querySelector('#messages .msg.error'); return m && m.textContent; });
    assert(msg409.includes('409') && msg409.includes(`deployment ${d3.id} is STOPPED`),
           `readable 409: ${msg409}`);
    await until(page, `deployment ${d3.id} shown STOPPED after the failed action`,
                (id) => { const c = document.querySelector(`[data-deployment="${id}"]`); return c && c.dataset.state === 'STOPPED'; },
                d3.id);
    await page.locator('#messages .msg.error button').click();     // dismiss
    await page.locator('#pause').click();                          // resume
    assert(await page.locator('#pause').getAttribute('aria-pressed') === 'false', 'Resume resumes');

    // The token changes (new file content + reload): the page's calls now get 401, and the
    // page says what happened and what to do. (Chromium logs those 401s: expected here.)
    fs.writeFileSync(T.token_file, 'rotated-token\n');
    const rl = await api('POST', '/api/v1/reload', {});
    assert(rl.status === 200, `reload with the new token file: ${rl.status} ${rl.text}`);
    const msg = await until(page, 'a readable 401 message on the page',
                            () => { const m = document.querySelector('#messages .msg.error'); return m && m.textContent; });
    assert(/401/.test(msg) && /unauthorized/.test(msg) && /\?token=/.test(msg), `readable 401: ${msg}`);
    assert(await page.locator('#status').getAttribute('data-state') === 'error', 'status shows the error');
  } finally {
    if (context)
      await context.close().catch(() => {});
    fs.rmSync(udd, { recursive: true, force: true });
  }
}

async function plain(page) {
  const resp = await page.goto(`${T.admin}/`);
  assert(resp.status() === 200, `GET / without token_file: ${resp.status()}`);
  for (const key of T.targets)
    await until(page, `${key} shown`, (sel) => document.querySelector(sel), rowSel(key));
  await until(page, 'the listener and its rules shown',
              () => document.querySelector('[data-listener="main"] tr[data-rule="main/default"]'));
  assert(await page.locator('#messages .msg').count() === 0, 'no error message on the page');
  assert(await page.evaluate(() => sessionStorage.getItem('ringlb.admin.token')) === null,
         'no token stored');
}

const deadline = setTimeout(() => {
  console.log('dashboard_e2e.js: overall time limit reached');
  process.exit(1);
}, Number(process.env.RINGLB_DASH_LIMIT_MS || 100000));

main().then(() => {
  clearTimeout(deadline);
  log('PASS');
  process.exit(0);
}, async (e) => {
  clearTimeout(deadline);
  console.log(`FAIL: ${e.stack || e}`);
  if (T.admin) {       // what the API says, to tell a page problem from a server one
    for (const p of ['/api/v1/deployments', '/api/v1/target-groups']) {
      const r = await api('GET', p).catch((x) => ({ status: 0, text: String(x) }));
      console.log(`GET ${p}: ${r.status} ${String(r.text).slice(0, 3000)}`);
    }
  }
  process.exit(1);
});
