// The embed page and kiosk mode end to end: a portal page on another loopback origin frames /embed, logs in
// inside the iframe, gets the console of the URL's target and the page's postMessage events; the full console
// refuses to be framed; kiosk mode offers only its pick list; an idle login ends with the reason shown. The real
// relay (`psgate demo --frame-ancestors …`, `--kiosk`, `--idle-timeout`), the real Trunk build, Debian's headless
// Chromium.
//
//   scripts/build-frontend.sh && cargo build -p psgate-relay && source scripts/env.sh   # PSGATE_PYTHON
//   cd tests/e2e && npm ci && node --test embed.test.mjs
//
// The portal and the relay are both on 127.0.0.1 (other ports: other origins, one site), so the relay's default
// `SameSite=Strict` login cookie is sent inside the iframe; a portal on another site needs
// `[embed] cookie_same_site = "none"` over HTTPS (docs/api.md).

import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { artifacts, expected401, launch as launchBrowser, requireBuilt, runCommand, startServer, stopServer, TIMEOUT } from './harness.mjs';

/** A portal: a page that frames `frameSrc()` and records every message it gets (`window.received`). */
function startPortal(frameSrc) {
  const server = http.createServer((req, res) => {
    const src = frameSrc(req.url);
    if (!src) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><title>portal</title>
<script>
  window.received = [];
  window.addEventListener('message', (e) => window.received.push({ origin: e.origin, data: e.data }));
</script>
<h1>portal</h1>
<iframe id="psgate" src="${src}" width="1100" height="700"></iframe>`);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${server.address().port}` })));
}

const launch = () => launchBrowser({ width: 1300, height: 900 });

before(() => requireBuilt());

describe('embed', () => {
  let portal;
  let demo;
  let browser;
  let relayOrigin;
  const problems = [];

  /** The portal's messages from psgate so far. */
  const received = () => browser.page.evaluate(() => window.received);
  /** Waits until the portal has a message from psgate matching `fields`. */
  const waitFor = (fields) =>
    browser.page.waitForFunction(
      (f) => window.received.some((m) => m.data && m.data.source === 'psgate' && Object.entries(f).every(([k, v]) => m.data[k] === v)),
      fields,
    );

  before(async () => {
    portal = await startPortal((url) => {
      if (url === '/portal') return `${relayOrigin}/embed?computer=localhost&transport=local&name=embedded`;
      if (url === '/framing-console') return `${relayOrigin}/`;
      return null;
    });
    demo = await startServer(['--frame-ancestors', portal.url]);
    relayOrigin = new URL(demo.url).origin;
    browser = await launch();
    browser.page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    browser.page.on('response', (r) => r.status() >= 400 && !expected401(r.url(), r.status()) && !r.url().endsWith('/favicon.ico') && problems.push(`HTTP ${r.status()}: ${r.url()}`));
  });

  after(async () => {
    await browser?.close();
    if (demo) await stopServer(demo.server);
    portal?.server.close();
  });

  test('/embed may be framed by the portal; every other page by nobody', async () => {
    const embed = await fetch(`${relayOrigin}/embed`);
    assert.equal(embed.headers.get('content-security-policy'), `frame-ancestors ${portal.url}`);
    assert.equal(embed.headers.get('x-frame-options'), null);
    const console = await fetch(`${relayOrigin}/`);
    assert.equal(console.headers.get('content-security-policy'), "frame-ancestors 'none'");
    assert.equal(console.headers.get('x-frame-options'), 'DENY');
  });

  test('the full console refuses to be framed', async () => {
    // Chromium says so on the portal's console and shows its error page in the frame.
    const refused = browser.page.waitForEvent('console', { predicate: (m) => /frame-ancestors 'none'/.test(m.text()), timeout: TIMEOUT });
    await browser.page.goto(`${portal.url}/framing-console`);
    await refused;
    const frame = browser.page.frames().find((f) => f !== browser.page.mainFrame());
    assert.ok(frame, 'the iframe is there');
    for (let i = 0; i < 50 && !frame.url().startsWith('chrome-error:'); i++) await browser.page.waitForTimeout(100);
    assert.match(frame.url(), /^chrome-error:/);
    assert.equal(await frame.locator('#login-name').count(), 0, 'no login form inside');
  });

  test('inside the portal: log in, the console of the URL\'s target, and the events', async () => {
    const page = browser.page;
    await page.goto(`${portal.url}/portal`);
    const frame = page.frameLocator('#psgate');
    await waitFor({ type: 'ready', logged_in: false });
    assert.equal(await frame.locator('a[href="/viewer"]').count(), 0, 'no link to a page that cannot be framed');
    await frame.locator('#login-name').fill(demo.user);
    await frame.locator('#login-password').fill(demo.password);
    await frame.locator('#login-submit').click();
    await waitFor({ type: 'logged_in', user: demo.user });
    // Only the console: no sessions panel, no Invoke-Command, no free-form host.
    await frame.locator('#console-input').waitFor();
    assert.equal(await frame.locator('#sessions').count(), 0);
    assert.equal(await frame.locator('#invoke').count(), 0);
    assert.equal(await frame.locator('#new-computers').count(), 0);
    assert.match(await frame.locator('#embed-target').textContent(), /embedded \(localhost, local\)/);
    await waitFor({ type: 'session', state: 'opened', computer: 'localhost', name: 'embedded' });

    await frame.locator('#console-input').fill('Get-Date');
    await frame.locator('#console-input').press('Enter');
    await waitFor({ type: 'pipeline', state: 'running' });
    await waitFor({ type: 'pipeline', state: 'completed' });
    const entry = frame.locator('.console-entry').first();
    assert.match(await entry.locator('.console-command').textContent(), /Get-Date$/);
    assert.ok((await entry.textContent()).length > 'Get-Date'.length, 'the date is shown');
    await page.screenshot({ path: path.join(artifacts, 'embed-portal.png'), fullPage: true });

    // Every message came from the relay's origin, as psgate's, and said nothing of the session's credentials.
    const messages = await received();
    assert.ok(messages.length >= 6, JSON.stringify(messages));
    for (const m of messages) {
      assert.equal(m.origin, relayOrigin);
      assert.equal(m.data.source, 'psgate');
    }
    const types = messages.map((m) => m.data.type);
    assert.deepEqual(types.slice(0, 2), ['ready', 'logged_in']);
    assert.deepEqual(
      messages.filter((m) => m.data.type === 'session').map((m) => m.data.state),
      ['opening', 'opened'],
    );
  });

  test('a reload takes up the same session; logging out tells the portal', async () => {
    const page = browser.page;
    const before = (await received()).find((m) => m.data.type === 'session' && m.data.state === 'opened').data.id;
    await page.goto(`${portal.url}/portal`);
    const frame = page.frameLocator('#psgate');
    await waitFor({ type: 'ready', logged_in: true, user: demo.user });
    await waitFor({ type: 'session', state: 'opened', id: before });
    await frame.locator('#console-input').waitFor();
    await frame.locator('#logout').click();
    await waitFor({ type: 'logged_out' });
    await frame.locator('#login-name').waitFor();
    assert.deepEqual(problems, []);
  });
});

describe('kiosk', () => {
  let demo;
  let browser;

  before(async () => {
    demo = await startServer(['--kiosk']);
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
    if (demo) await stopServer(demo.server);
  });

  test('the sessions panel offers only the pick list, and its target works', async () => {
    const page = browser.page;
    await page.goto(demo.url);
    await page.locator('#login-name').fill(demo.user);
    await page.locator('#login-password').fill(demo.password);
    await page.click('#login-submit');
    await page.locator('.topbar .link.open').waitFor();
    const options = page.locator('#kiosk-target option');
    await options.first().waitFor({ state: 'attached' });
    assert.deepEqual(await options.allTextContents(), ['Demo shell (localhost, local)', 'Scratch shell (localhost, local)']);
    assert.equal(await page.locator('#new-computers').count(), 0, 'no free-form host');
    assert.equal(await page.locator('#new-transport').count(), 0);
    await page.locator('#kiosk-target').selectOption({ label: 'Scratch shell (localhost, local)' });
    await page.click('#new-session');
    const row = page.locator('#sessions tr.session-row').first();
    await row.locator('td.state-opened').waitFor();
    assert.equal(await row.locator('td').nth(1).textContent(), 'Scratch shell');
    await runCommand(page, 'Get-Date');
    await page.screenshot({ path: path.join(artifacts, 'kiosk.png'), fullPage: true });
  });
});

describe('idle logout', () => {
  let demo;
  let browser;

  before(async () => {
    demo = await startServer(['--idle-timeout', '3']);
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
    if (demo) await stopServer(demo.server);
  });

  test('an idle login ends: the page shows why, then the login', async () => {
    const page = browser.page;
    await page.goto(demo.url);
    await page.locator('#login-name').fill(demo.user);
    await page.locator('#login-password').fill(demo.password);
    await page.click('#login-submit');
    await page.locator('.topbar .link.open').waitFor();
    // Nothing happens for 3 s: the relay closes the WebSocket with the reason, the page goes back to the login.
    await page.locator('.login-error', { hasText: 'logged out after 3 s without activity' }).waitFor();
    await page.locator('#login-name').waitFor();
    await page.screenshot({ path: path.join(artifacts, 'idle-logout.png'), fullPage: true });
    const me = await page.evaluate(() => fetch('/api/me').then((r) => r.status));
    assert.equal(me, 401);
  });
});
