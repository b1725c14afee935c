// Session quotas in the browser: `psgate serve` with [quotas] (IdleTimeout, MaxShellRunTime) and the WS-Management
// test peer behind it. The sessions panel says when each session closes; its Quotas button shows the target's WSMan
// quotas beside the user's shells there (Get-PSGateQuota -ComputerName) at psgate's prompt, where Set-Item on the
// WSMan: drive changes them and Get-ChildItem lists WSMan:\<computer>\Shell as PowerShell's provider does.
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
    relay = await startRelay(dir, config);
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

  test('Quotas shows the target\'s WSMan quotas beside your shells there; Set-Item changes one', async () => {
    await page.locator('#sessions tr.session-row .session-quotas').first().click();
    const entry = page.locator('.console-entry').last();
    const table = entry.locator('table').first();
    await table.waitFor({ timeout: SLOW });
    assert.deepEqual(await table.locator('th').allTextContents(), ['Quota', 'Limit', 'Used', 'Scope']);
    const shellRow = table.locator('tbody tr', { hasText: 'WSMan:\\127.0.0.1\\Shell' }).filter({ hasText: 'MaxShellsPerUser' });
    assert.deepEqual((await shellRow.locator('td').allTextContents()).map((t) => t.trim()), ['MaxShellsPerUser', '2147483647', '1', 'WSMan:\\127.0.0.1\\Shell']);
    await shot('quotas-target.png');
    await run('Set-Item WSMan:\\127.0.0.1\\Shell\\MaxShellsPerUser 4');
    const listed = await run('Get-ChildItem WSMan:\\127.0.0.1\\Shell');
    const drive = listed.locator('table').first();
    await drive.waitFor();
    assert.deepEqual(await drive.locator('th').allTextContents(), ['Type', 'Name', 'SourceOfValue', 'Value']);
    const cells = (await drive.locator('tbody tr', { hasText: 'MaxShellsPerUser' }).locator('td').allTextContents()).map((t) => t.trim());
    assert.deepEqual(cells, ['System.String', 'MaxShellsPerUser', '', '4']);
    await shot('quotas-wsman-drive.png');
    assert.deepEqual(problems, []);
  });
});
