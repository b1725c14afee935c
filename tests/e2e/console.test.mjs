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
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { artifacts, launch, repo, requireBuilt, runCommand, startServer, stopServer, TIMEOUT, watch } from './harness.mjs';

describe('console', () => {
  let server;
  let browser;
  let context;
  let page;
  let demo;
  const problems = [];
  const shot = (name) => page.screenshot({ path: path.join(artifacts, name), fullPage: true });

  /** Types a command at the prompt and waits for its pipeline to end (or, with `until`, for that selector). */
  const run = (script, until) => runCommand(page, script, { until });

  before(async () => {
    requireBuilt();
    demo = await startServer();
    server = demo.server;
    browser = await launch();
    ({ context, page } = browser);
    // /api/me answers 401 before the login, and so does the wrong password: both expected (Chromium logs them).
    watch(page, problems);
    await page.goto(demo.url);
  });

  after(async () => {
    await browser?.close();
    if (server) await stopServer(server);
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

  test('New-PSSession to two computers at once opens two sessions', async () => {
    await page.locator('#new-computers').fill('localhost, localhost');
    await page.click('#new-session');
    const rows = page.locator('#sessions tr.session-row');
    for (const i of [0, 1]) {
      await rows.nth(i).locator('td.state-opened').waitFor();
      const cells = (await rows.nth(i).locator('td').allTextContents()).slice(0, 6);
      assert.equal(cells[2], 'localhost');
      assert.deepEqual(cells.slice(3), ['Local', 'Opened', 'Available']);
    }
    assert.equal(await rows.count(), 2);
    // The prompt is the remote prompt function's, after [COMPUTER]: as Enter-PSSession shows it.
    await page.locator('.session-console .console-input-line .console-prompt', { hasText: '[localhost]: PS C:\\Users\\psgate>' }).waitFor();
    await shot('console-two-sessions.png');
  });

  test('Get-Process shows a table with svchost', async () => {
    const entry = await run('Get-Process');
    const table = entry.locator('.format-table').first();
    await table.locator('tbody tr', { hasText: 'svchost' }).first().waitFor();
    assert.ok((await table.locator('th').allTextContents()).length > 1, 'a table with columns');
    assert.equal(await entry.locator('.console-command').textContent(), '[localhost]: PS C:\\Users\\psgate> Get-Process');
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

  test('Tab completes through the remote TabExpansion2 and cycles through several matches', async () => {
    const input = page.locator('#console-input');
    await input.fill('Get-Pro');
    await input.press('Tab');
    await page.waitForFunction(() => document.querySelector('#console-input').value === 'Get-Process');
    await input.fill('Write-');
    await input.press('Tab');
    await page.locator('#completion-list li.current', { hasText: 'Write-Debug' }).waitFor();
    assert.equal(await input.inputValue(), 'Write-Debug');
    assert.ok((await page.locator('#completion-list li').count()) >= 5, 'every Write- command is listed');
    await shot('console-tab-completion.png');
    await input.press('Tab');
    assert.equal(await input.inputValue(), 'Write-Error');
    await input.press('Shift+Tab');
    assert.equal(await input.inputValue(), 'Write-Debug');
    await input.fill('');
    await page.locator('#completion-list').waitFor({ state: 'detached' });
  });

  test('Set-Location changes the prompt, as the remote prompt function says', async () => {
    await run('Set-Location C:\\Windows');
    await page.locator('.console-input-line .console-prompt', { hasText: '[localhost]: PS C:\\Windows>' }).waitFor();
    const entry = await run('Get-Location');
    assert.match(await entry.locator('.console-command').textContent(), /^\[localhost\]: PS C:\\Windows> Get-Location$/);
  });

  test('Write-Progress shows a progress bar', async () => {
    const entry = await run('Write-Progress -Activity Copying -Status Halfway -PercentComplete 50');
    const bar = entry.locator('[role=progressbar]');
    await bar.waitFor();
    assert.equal(await bar.getAttribute('aria-valuenow'), '50');
    assert.equal(await bar.getAttribute('aria-label'), 'Copying');
    await shot('console-progress.png');
  });

  test('Invoke-Command runs on two sessions and groups the results by computer', async () => {
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
    assert.equal(await page.locator('#console-input').inputValue(), 'Write-Progress -Activity Copying -Status Halfway -PercentComplete 50');
    await page.locator('#console-input').fill('');
  });

  test('closing the tab and coming back shows the same consoles and Invoke-Command results', async () => {
    const before = await page.locator('.session-console .console-command').allTextContents();
    assert.ok(before.some((c) => c.endsWith('Get-Process')));
    await page.close();
    page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    await page.goto(demo.url);
    await page.locator('.topbar .link.open').waitFor();
    assert.equal(await page.locator('#sessions tr.session-row').count(), 2);
    // The commands come back in order, their output replayed by the relay: the table of Get-Process again.
    await page.locator('.session-console .console-entry .format-table tbody tr', { hasText: 'svchost' }).first().waitFor();
    assert.deepEqual(await page.locator('.session-console .console-command').allTextContents(), before);
    await page.locator('.session-console pre.message.stream-warning', { hasText: 'WARNING: careful' }).waitFor();
    // The Invoke-Command run, finished, with each computer's results.
    const run = page.locator('#invoke .invocation.finished').first();
    await run.waitFor();
    assert.equal(await run.locator('.invoke-summary').textContent(), '2 host(s): 2 completed');
    await run.locator('.invoke-host .format-table tbody tr', { hasText: 'svchost' }).first().waitFor();
    // History (Up) is back too.
    await page.locator('#console-input').press('ArrowUp');
    assert.equal(await page.locator('#console-input').inputValue(), before.at(-1).replace(/^\[localhost\]: PS [^>]*> /, ''));
    await page.locator('#console-input').fill('');
    await shot('console-come-back.png');
  });

  test('Remove all empties the list', async () => {
    await page.click('#remove-all');
    await page.locator('#sessions tr.session-row').first().waitFor({ state: 'detached' });
    // The console goes back to psgate's prompt, which is always there.
    await page.locator('.session-console .console-input-line .console-prompt', { hasText: 'PS psgate>' }).waitFor();
    await shot('console-removed.png');
  });

  test('the page raised no errors', () => {
    assert.deepEqual(problems, []);
  });
});
