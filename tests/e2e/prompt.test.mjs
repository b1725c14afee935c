// psgate's prompt (PS psgate>) end to end: an admin types the remoting lines in the browser, against the demo
// target (localhost over the local transport, the psrpcore test host). The sessions panel follows the prompt; Enter-
// PSSession switches the console into the session and exit comes back; a reload finds $session1 again.
//
//   scripts/build-frontend.sh && cargo build -p psgate-relay && source scripts/env.sh
//   cd tests/e2e && npm ci && node --test prompt.test.mjs
//
// Screenshots go to tests/e2e/artifacts/prompt-*.png.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { artifacts, launch, requireBuilt, runCommand, startServer, stopServer, watch } from './harness.mjs';

describe('prompt', () => {
  let server;
  let browser;
  let page;
  let demo;
  const problems = [];
  const shot = (name) => page.screenshot({ path: path.join(artifacts, name), fullPage: true });
  const run = (script, until) => runCommand(page, script, { until });
  const text = async (entry) => (await entry.locator('.objects-title, pre, table').allTextContents()).join('\n');
  /** Types a line that switches the console (Enter-PSSession, exit) and waits for `selector`. */
  const switchWith = async (line, selector) => {
    await page.locator('#console-input').fill(line);
    await page.locator('#console-input').press('Enter');
    await page.locator(selector).waitFor();
    await page.locator('#console-input[placeholder=""]').waitFor();
  };

  before(async () => {
    requireBuilt();
    demo = await startServer();
    server = demo.server;
    browser = await launch();
    ({ page } = browser);
    watch(page, problems);
    await page.goto(demo.url);
    await page.locator('#login-name').fill(demo.user);
    await page.locator('#login-password').fill(demo.password);
    await page.click('#login-submit');
    await page.locator('.topbar .link.open').waitFor();
  });

  after(async () => {
    await browser?.close();
    if (server) await stopServer(server);
  });

  test('the console opens at psgate\'s prompt', async () => {
    await page.locator('.console-input-line .console-prompt', { hasText: 'PS psgate>' }).waitFor();
    assert.match(await page.locator('.session-console h2').textContent(), /psgate/);
    await shot('prompt-empty.png');
  });

  test('New-PSSession at the prompt appears in the sessions panel, Get-PSSession lists it as PowerShell does', async () => {
    await run('$session1 = New-PSSession -Name web');
    await run('$s2 = New-PSSession -Name db; $s3 = New-PSSession -Name dc');
    const rows = page.locator('#sessions tr.session-row');
    await rows.nth(2).locator('td.state-opened').waitFor();
    assert.deepEqual((await rows.locator('td:nth-child(2)').allTextContents()), ['web', 'db', 'dc']);
    // The console stays at the prompt.
    await page.locator('.console-input-line .console-prompt', { hasText: 'PS psgate>' }).waitFor();
    const entry = await run('Get-PSSession');
    const table = entry.locator('table.format-table').first();
    assert.deepEqual(await table.locator('th').allTextContents(), ['Id', 'Name', 'Transport', 'ComputerName', 'ComputerType', 'State', 'ConfigurationName', 'Availability']);
    assert.equal(await table.locator('tbody tr').count(), 3);
    assert.equal(await entry.locator('.console-command').textContent(), 'PS psgate> Get-PSSession');
    await shot('prompt-get-pssession.png');
    const members = await run('$session1 | gm');
    await members.locator('table', { hasText: 'ScriptProperty' }).first().waitFor();
    assert.match(await text(members), /TypeName: System\.Management\.Automation\.Runspaces\.PSSession/);
  });

  test('Invoke-Command on three sessions: results tagged with their computer', async () => {
    const entry = await run('Invoke-Command -Session (Get-PSSession) -ScriptBlock { Get-Process -Name svchost } | Select-Object -First 3 | ft ProcessName, PSComputerName');
    const table = entry.locator('table.format-table').first();
    assert.deepEqual(await table.locator('th').allTextContents(), ['ProcessName', 'PSComputerName']);
    assert.equal(await table.locator('tbody tr', { hasText: 'localhost' }).count(), 3);
    await shot('prompt-invoke-command.png');
  });

  test('Enter-PSSession switches the console into the session, exit comes back', async () => {
    await switchWith('Get-PSSession -Name web | Enter-PSSession', '.console-input-line .console-prompt:has-text("[localhost]: PS")');
    await page.locator('.session-console h2', { hasText: 'web' }).waitFor();
    const entry = await run('Get-Date');
    assert.match(await entry.locator('.console-command').textContent(), /^\[localhost\]: PS C:\\Users\\psgate> Get-Date$/);
    await shot('prompt-entered.png');
    await switchWith('exit', '.console-input-line .console-prompt:has-text("PS psgate>")');
    assert.match(await page.locator('.session-console h2').textContent(), /psgate/);
  });

  test('errors read as PowerShell words them, with the nearest command', async () => {
    const entry = await run('new-pssesion -Name x');
    await entry.locator('.stream-error, .error-record', { hasText: "The term 'new-pssesion' is not recognized" }).first().waitFor();
    assert.match(await text(entry), /New-PSSession/);
    const bad = await run('Get-PSSession -Id (');
    await bad.locator('.stream-error, .error-record', { hasText: "Missing closing ')' in expression." }).first().waitFor();
    await shot('prompt-errors.png');
  });

  test('Tab completes commands, parameters and variables at the prompt', async () => {
    const input = page.locator('#console-input');
    await input.fill('Enter-PSS');
    await input.press('Tab');
    await page.waitForFunction(() => document.querySelector('#console-input').value === 'Enter-PSSession');
    await input.fill('Enter-PSSession -Session $sess');
    await input.press('Tab');
    await page.waitForFunction(() => document.querySelector('#console-input').value === 'Enter-PSSession -Session $session1');
    await input.fill('');
  });

  test('Remove-PSSession leaves the panel in step; a reload finds $session1 again', async () => {
    await run('Remove-PSSession -Name db, dc');
    const rows = page.locator('#sessions tr.session-row');
    await page.waitForFunction(() => document.querySelectorAll('#sessions tr.session-row').length === 1);
    assert.deepEqual(await rows.locator('td:nth-child(2)').allTextContents(), ['web']);
    await page.reload();
    await page.locator('.topbar .link.open').waitFor();
    await page.locator('.console-entry .console-command', { hasText: 'PS psgate> $session1 = New-PSSession -Name web' }).waitFor();
    const entry = await run('$session1.Name; $session1.State');
    assert.match(await text(entry), /web[\s\S]*Opened/);
    await shot('prompt-after-reload.png');
    await run('Get-PSSession | Remove-PSSession');
    await page.waitForFunction(() => document.querySelectorAll('#sessions tr.session-row').length === 0);
    assert.deepEqual(problems, []);
  });
});
