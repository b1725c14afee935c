// Session quotas in the browser: `psgate serve` with [quotas] (IdleTimeout, MaxShellRunTime) and the WS-Management
// test peer behind it. The sessions panel says when each session closes; its Quotas button shows the target's WSMan
// quotas beside the user's shells there (Get-PSGateQuota -ComputerName) at psgate's prompt, with a button to open
// each WSMan:\<computer>\… container (Get-ChildItem, as PowerShell's provider lists it), where each setting changes
// with Set-Item from a box. A relay admin's "All users" lists every user's sessions and quota use, and closes one.
//
//   scripts/build-frontend.sh && cargo build -p psgate-relay && source scripts/env.sh   # PSGATE_PYTHON
//   cd tests/e2e && npm ci && node --test quotas.test.mjs
//
// Screenshots go to tests/e2e/artifacts/quotas-*.png.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { chromium } from 'playwright-core';

import { artifacts, browserPath, CHROMIUM_ARGS, requireBuilt, runCommand, startRelay, startWinrmPeer, stopServer, TIMEOUT, watch } from './harness.mjs';

const WINRM_USER = 'PSGATE\\ada';
const WINRM_PASSWORD = 'Secret-1';
const SLOW = 45_000;

describe('quotas', () => {
  let dir;
  let peer;
  let relay;
  let browser;
  let page;
  const problems = [];
  const shot = (name) => page.screenshot({ path: path.join(artifacts, name), fullPage: true });
  const run = (script) => runCommand(page, script, { timeout: SLOW });

  before(async () => {
    requireBuilt({ needPython: true });
    dir = mkdtempSync(path.join(tmpdir(), 'psgate-e2e-quotas-'));
    peer = await startWinrmPeer(['--user', `${WINRM_USER}:${WINRM_PASSWORD}`, '--auth', 'ntlm']);
    const config = `[[allow]]\nhosts = ["127.0.0.1"]\nports = [${peer.port}]\ntransports = ["winrm"]\n` +
      '[quotas]\nidle_timeout_secs = 3600\nmax_shell_run_time_secs = 7200\nmax_shells_per_user = 5\n';
    relay = await startRelay(dir, config, { admin: true, others: ['bob'] });
    browser = await chromium.launch({ executablePath: browserPath, headless: true, args: CHROMIUM_ARGS });
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    watch(page, problems);
    await page.goto(relay.url);
    await page.locator('#login-name').fill(relay.user);
    await page.locator('#login-password').fill(relay.password);
    await page.click('#login-submit');
    await page.locator('.topbar .link.open').waitFor();
  });

  after(async () => {
    await browser?.close();
    if (relay) await stopServer(relay.server);
    if (peer) await stopServer(peer.peer);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the sessions panel says when the relay\'s quotas close each session', async () => {
    await page.locator('#new-transport').selectOption('winrm');
    await page.locator('#new-computers').fill('127.0.0.1');
    await page.locator('#new-port').fill(String(peer.port));
    await page.locator('#new-authentication').selectOption('ntlm');
    await page.locator('#new-user').fill(WINRM_USER);
    await page.locator('#new-password').fill(WINRM_PASSWORD);
    await page.click('#new-session');
    const row = page.locator('#sessions tr.session-row').first();
    await row.locator('td.state-opened').waitFor({ timeout: SLOW });
    assert.ok((await page.locator('#sessions th').allTextContents()).includes('Closes in'));
    // IdleTimeout (1 h) comes before MaxShellRunTime (2 h): 59 min or 1 h 0 min, idle.
    assert.match(await row.locator('td.session-closes').textContent(), /^(59 min|1 h 0 min) \(idle\)$/);
    await shot('quotas-panel.png');
  });

  test('Quotas shows the target\'s WSMan quotas beside your shells there; a WSMan: setting changes from its box', async () => {
    await page.locator('#sessions tr.session-row .session-quotas').first().click();
    const entry = page.locator('.console-entry').last();
    const table = entry.locator('table').first();
    await table.waitFor({ timeout: SLOW });
    assert.deepEqual(await table.locator('th').allTextContents(), ['Quota', 'Limit', 'Used', 'Scope']);
    const shellRow = table.locator('tbody tr', { hasText: 'WSMan:\\127.0.0.1\\Shell' }).filter({ hasText: 'MaxShellsPerUser' });
    assert.deepEqual((await shellRow.locator('td').allTextContents()).map((t) => t.trim()), ['MaxShellsPerUser', '2147483647', '1', 'WSMan:\\127.0.0.1\\Shell']);
    const containers = await entry.locator('.output-actions button.open-wsman').allTextContents();
    assert.ok(containers.includes('WSMan:\\127.0.0.1\\Shell') && containers.includes('WSMan:\\127.0.0.1\\Service'), containers.join(', '));
    await shot('quotas-target.png');
    // Open WSMan:\127.0.0.1\Shell: its settings as PowerShell lists them, each with a box.
    const entries = page.locator('.console-entry');
    let before = await entries.count();
    await entry.locator('.output-actions button.open-wsman', { hasText: /^WSMan:\\127\.0\.0\.1\\Shell$/ }).click();
    let listed = entries.nth(before);
    await listed.locator('table').first().waitFor({ timeout: SLOW });
    assert.equal(await listed.locator('.console-command').textContent(), "PS psgate> Get-ChildItem 'WSMan:\\127.0.0.1\\Shell'");
    assert.deepEqual(await listed.locator('table th').allTextContents(), ['Type', 'Name', 'SourceOfValue', 'Value']);
    const setting = listed.locator('form.wsman-setting', { hasText: 'MaxShellsPerUser' });
    assert.equal(await setting.getAttribute('data-path'), 'WSMan:\\127.0.0.1\\Shell\\MaxShellsPerUser');
    assert.equal(await setting.locator('input').inputValue(), '2147483647');
    await setting.locator('input').fill('4');
    before = await entries.count();
    await setting.locator('button[type=submit]').click();
    listed = entries.nth(before);
    const drive = listed.locator('table').first();
    await drive.waitFor({ timeout: SLOW });
    assert.equal(await listed.locator('.console-command').textContent(), "PS psgate> Set-Item 'WSMan:\\127.0.0.1\\Shell\\MaxShellsPerUser' '4'; Get-ChildItem 'WSMan:\\127.0.0.1\\Shell'");
    const cells = (await drive.locator('tbody tr', { hasText: 'MaxShellsPerUser' }).locator('td').allTextContents()).map((t) => t.trim());
    assert.deepEqual(cells, ['System.String', 'MaxShellsPerUser', '', '4']);
    // The target itself says so: read back over the wire.
    const read = await run('(Get-Item WSMan:\\127.0.0.1\\Shell\\MaxShellsPerUser).Value');
    assert.equal((await read.locator('.block').allTextContents()).join('').trim(), '4');
    await shot('quotas-wsman-drive.png');
    assert.deepEqual(problems, []);
  });

  test('a relay admin lists every user\'s sessions and closes one', async () => {
    // bob, in a browser of his own, opens a session.
    const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
    const bob = await context.newPage();
    bob.setDefaultTimeout(TIMEOUT);
    await bob.goto(relay.url);
    await bob.locator('#login-name').fill('bob');
    await bob.locator('#login-password').fill(relay.password);
    await bob.click('#login-submit');
    await bob.locator('.topbar .link.open').waitFor();
    assert.equal(await bob.locator('#admin-sessions').count(), 0, 'bob is no admin');
    await bob.locator('#new-transport').selectOption('winrm');
    await bob.locator('#new-computers').fill('127.0.0.1');
    await bob.locator('#new-port').fill(String(peer.port));
    await bob.locator('#new-authentication').selectOption('ntlm');
    await bob.locator('#new-user').fill(WINRM_USER);
    await bob.locator('#new-password').fill(WINRM_PASSWORD);
    await bob.click('#new-session');
    const bobs = bob.locator('#sessions tr.session-row').first();
    await bobs.locator('td.state-opened').waitFor({ timeout: SLOW });
    // The admin's All users: every user's sessions, then every user's quota use.
    const entries = page.locator('.console-entry');
    let before = await entries.count();
    await page.click('#admin-sessions');
    let listed = entries.nth(before);
    await listed.locator('table').nth(1).waitFor({ timeout: SLOW });
    const sessions = listed.locator('table').first();
    assert.deepEqual((await sessions.locator('th').allTextContents()).slice(0, 6), ['User', 'Id', 'Name', 'ComputerName', 'Transport', 'State']);
    const bobRow = sessions.locator('tbody tr', { hasText: 'bob' });
    const cells = (await bobRow.locator('td').allTextContents()).map((t) => t.trim());
    const id = cells[1];
    assert.deepEqual(cells.slice(0, 6), ['bob', id, `Runspace${id}`, '127.0.0.1', 'WSMan', 'Opened']);
    assert.equal(await bob.locator('#sessions tr.session-row td.num').first().textContent(), id, 'the Id bob sees');
    const use = listed.locator('table').nth(1);
    assert.deepEqual((await use.locator('th').allTextContents()).slice(0, 3), ['User', 'Quota', 'Limit']);
    assert.equal(await use.locator('tbody tr', { hasText: 'bob' }).filter({ hasText: 'MaxShellsPerUser' }).count(), 1);
    await shot('quotas-admin.png');
    // Close bob's session (Remove-PSGateSession, audited by the relay); the list is shown again.
    before = await entries.count();
    await listed.locator('.output-actions button.close-user-session', { hasText: `Close bob's session ${id} (127.0.0.1)` }).click();
    listed = entries.nth(before);
    await listed.locator('table').first().waitFor({ timeout: SLOW });
    assert.equal(await listed.locator('.console-command').textContent(), `PS psgate> Remove-PSGateSession -User 'bob' -Id ${id}; Get-PSGateSession | Format-Table`);
    // bob is told, and his session is gone from his panel.
    await bob.locator('.notices .notice', { hasText: `The relay admin e2e closed your session ${id} on 127.0.0.1.` }).waitFor({ timeout: SLOW });
    await bob.locator(`#sessions tr.session-row[data-id="${id}"]`).waitFor({ state: 'detached' });
    await bob.screenshot({ path: path.join(artifacts, 'quotas-admin-closed-bob.png') });
    assert.equal(await listed.locator('.output-actions button.close-user-session', { hasText: 'bob' }).count(), 0, 'a closed session has no Close');
    await shot('quotas-admin-closed.png');
    await context.close();
    assert.deepEqual(problems, []);
  });
});
