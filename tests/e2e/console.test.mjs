// The console end to end: log in, New-PSSession to the demo target (localhost over the local transport, the
// psrpcore test host), run commands, answer Read-Host, remove the sessions. The real relay, the real Trunk build,
// Debian's headless Chromium.
//
//   scripts/build-frontend.sh && cargo build -p psgate-relay && source scripts/env.sh   # PSGATE_PYTHON
//   cd tests/e2e && npm ci && npm test
//
// PSGATE_BIN (default <repo>/target/debug/psgate) and PSGATE_DIST (default <repo>/dist) say what to test;
// CHROMIUM (default /usr/bin/chromium) which browser. Screenshots go to tests/e2e/artifacts/.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { chromium } from 'playwright-core';

import { artifacts, bin, browserPath, CHROMIUM_ARGS, dist, repo, startServer, stopServer, TIMEOUT } from './harness.mjs';

describe('console', () => {
  let server;
  let context;
  let page;
  let profile;
  let demo;
  const problems = [];
  const shot = (name) => page.screenshot({ path: path.join(artifacts, name), fullPage: true });

  /** Types a command at the prompt and waits for its pipeline to end (or, with `until`, for that selector). */
  async function run(script, until) {
    const before = await page.locator('.console-entry').count();
    await page.locator('#console-input').fill(script);
    await page.locator('#console-input').press('Enter');
    const entry = page.locator('.console-entry').nth(before);
    await entry.waitFor();
    if (until) await page.locator(until).waitFor();
    else await page.locator('#console-input[placeholder=""]').waitFor();
    return entry;
  }

  before(async () => {
    for (const [what, p] of [['psgate binary (cargo build -p psgate-relay)', bin], ['Trunk build (scripts/build-frontend.sh)', path.join(dist, 'index.html')]]) {
      assert.ok(existsSync(p), `no ${what} at ${p}`);
    }
    mkdirSync(artifacts, { recursive: true });
    demo = await startServer();
    server = demo.server;
    profile = mkdtempSync(path.join(tmpdir(), 'psgate-e2e-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: browserPath,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1400, height: 1000 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(TIMEOUT);
    // /api/me answers 401 before the login, and so does the wrong password: both expected (Chromium logs them).
    const expected401 = (url, status) => status === 401 && /\/api\/(me|login)$/.test(url);
    page.on('console', (m) => m.type() === 'error' && !expected401(m.location().url, 401) && problems.push(`console: ${m.text()}`));
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
    page.on('response', (r) => r.status() >= 400 && !expected401(r.url(), r.status()) && problems.push(`HTTP ${r.status()}: ${r.url()}`));
    await page.goto(demo.url);
  });

  after(async () => {
    await context?.close();
    if (server) await stopServer(server);
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  test('a wrong password is refused, the demo login is accepted', async () => {
    await page.locator('#login-name').fill(demo.user);
    await page.locator('#login-password').fill('not the password');
    await page.click('#login-submit');
    assert.equal(await page.locator('.login-error').textContent(), 'wrong user name or password');
    await shot('console-login-refused.png');
    await page.locator('#login-password').fill(demo.password);
    await page.click('#login-submit');
    await page.locator('.topbar .link.open').waitFor();
    assert.equal(await page.locator('#user').textContent(), demo.user);
  });

  test('New-PSSession to localhost opens a session', async () => {
    await page.locator('#new-computers').fill('localhost');
    await page.click('#new-session');
    const row = page.locator('#sessions tr.session-row').first();
    await row.locator('td.state-opened').waitFor();
    const cells = (await row.locator('td').allTextContents()).slice(0, 6);
    assert.equal(cells[2], 'localhost');
    assert.deepEqual(cells.slice(3), ['Local', 'Opened', 'Available']);
    await page.locator('.session-console .console-input-line .console-prompt', { hasText: '[localhost]: PS>' }).waitFor();
  });

  test('Get-Process shows a table with svchost', async () => {
    const entry = await run('Get-Process');
    const table = entry.locator('.format-table').first();
    await table.locator('tbody tr', { hasText: 'svchost' }).first().waitFor();
    assert.ok((await table.locator('th').allTextContents()).length > 1, 'a table with columns');
    assert.equal(await entry.locator('.console-command').textContent(), '[localhost]: PS> Get-Process');
    await shot('console-get-process.png');
  });

  test('Write-Warning shows a WARNING line', async () => {
    const entry = await run('Write-Warning careful');
    const warning = entry.locator('pre.message.stream-warning');
    assert.equal(await warning.textContent(), 'WARNING: careful');
    assert.equal(await warning.evaluate((e) => getComputedStyle(e).color), 'rgb(249, 241, 165)');
  });

  test('Read-Host asks in a dialog and the answer is echoed', async () => {
    const entry = await run('Read-Host', '.host-dialog #host-input');
    await shot('console-read-host.png');
    await page.locator('#host-input').fill('hello from the browser');
    await page.click('#host-submit');
    await entry.locator('pre.message', { hasText: 'hello from the browser' }).waitFor();
    await page.locator('#console-input[placeholder=""]').waitFor();
    assert.equal(await page.locator('.host-dialog').count(), 0);
    await shot('console-after-read-host.png');
  });

  test('Read-Host -AsSecureString asks in a masked dialog and the relay makes the SecureString', async () => {
    const entry = await run('Read-Host -AsSecureString', '.host-dialog #host-input');
    const input = page.locator('#host-input');
    assert.equal(await input.getAttribute('type'), 'password');
    await input.fill('s3cret');
    await shot('console-secure-read-host.png');
    await page.click('#host-submit');
    await entry.locator('pre.message', { hasText: 'secure:s3cret' }).waitFor();
    await page.locator('#console-input[placeholder=""]').waitFor();
    assert.equal(await page.locator('.host-dialog').count(), 0);
    // The text went only into the answer: nothing on the page holds it but the host's echo.
    assert.equal(await page.locator('input[type=password]').count(), 1, 'only the New-PSSession password field is left');
  });

  test('Get-Credential asks for user and masked password, the user pre-filled', async () => {
    const entry = await run('Get-Credential -UserName bob', '.host-dialog #host-password');
    assert.equal(await page.locator('#host-user').inputValue(), 'bob');
    assert.equal(await page.locator('#host-password').getAttribute('type'), 'password');
    await page.locator('#host-password').fill('pw123');
    await shot('console-get-credential.png');
    await page.click('#host-submit');
    await entry.locator('pre.message', { hasText: 'password:pw123' }).waitFor();
    await page.locator('#console-input[placeholder=""]').waitFor();
  });

  test('Read-Host -Prompt -AsSecureString masks the Prompt field', async () => {
    const entry = await run('Read-Host -Prompt pin -AsSecureString', '.host-dialog input[data-field="pin"]');
    const field = page.locator('.host-dialog input[data-field="pin"]');
    assert.equal(await field.getAttribute('type'), 'password');
    await field.fill('1234');
    await page.click('#host-submit');
    await entry.locator('pre.message', { hasText: 'secure:1234' }).waitFor();
    await page.locator('#console-input[placeholder=""]').waitFor();
  });

  test('Invoke-Command runs on two sessions and groups the results by computer', async () => {
    await page.locator('#new-computers').fill('localhost');
    await page.click('#new-session');
    await page.locator('#sessions tr.session-row').nth(1).locator('td.state-opened').waitFor();
    const boxes = page.locator('#invoke .invoke-session input[type=checkbox]');
    assert.equal(await boxes.count(), 2);
    await boxes.nth(0).check();
    await boxes.nth(1).check();
    await page.locator('#invoke-script').fill('Get-Process -Name svchost');
    await page.click('#invoke-run');
    const run = page.locator('#invoke .invocation.finished').first();
    await run.waitFor();
    const hosts = run.locator('.invoke-host');
    assert.equal(await hosts.count(), 2);
    for (let i = 0; i < 2; i++) {
      const host = hosts.nth(i);
      assert.equal(await host.getAttribute('data-state'), 'completed');
      assert.equal(await host.locator('.invoke-computer').textContent(), 'localhost');
      assert.equal(await host.locator('.invoke-status').textContent(), 'completed');
      const rows = host.locator('.format-table tbody tr', { hasText: 'svchost' });
      await rows.first().waitFor();
      assert.ok((await rows.count()) >= 1);
    }
    assert.deepEqual(
      (await hosts.evaluateAll((hs) => hs.map((h) => h.getAttribute('data-session')))).sort(),
      (await page.locator('#sessions tr.session-row').evaluateAll((rs) => rs.map((r) => r.getAttribute('data-id')))).sort(),
    );
    assert.equal(await run.locator('.invoke-summary').textContent(), '2 host(s): 2 completed');
    await run.scrollIntoViewIfNeeded();
    await shot('console-invoke.png');
  });

  test('history: Up brings back the last command', async () => {
    await page.locator('#console-input').fill('');
    await page.locator('#console-input').press('ArrowUp');
    assert.equal(await page.locator('#console-input').inputValue(), 'Read-Host -Prompt pin -AsSecureString');
    await page.locator('#console-input').fill('');
  });

  test('Remove all empties the list', async () => {
    await page.click('#remove-all');
    await page.locator('#sessions tr.session-row').first().waitFor({ state: 'detached' });
    assert.equal(await page.locator('.session-console').count(), 0);
    await shot('console-removed.png');
  });

  test('the page raised no errors', () => {
    assert.deepEqual(problems, []);
  });
});
