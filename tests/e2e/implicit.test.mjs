// Implicit remoting at psgate's prompt in the browser, against the demo target (the psrpcore test host as a local
// process, with its ActiveDirectory module): the admin types the lines, sees the module, the deserialized
// users and the remote help under the prefixed name, and Tab completes the proxy's parameters.
//
//   scripts/build-frontend.sh && cargo build -p psgate-relay && source scripts/env.sh
//   cd tests/e2e && npm ci && node --test implicit.test.mjs
//
// Screenshots go to tests/e2e/artifacts/implicit-*.png.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { artifacts, launch, requireBuilt, runCommand, startServer, stopServer, watch } from './harness.mjs';

describe('implicit remoting', () => {
  let server;
  let browser;
  let page;
  let demo;
  const problems = [];
  const shot = (name) => page.screenshot({ path: path.join(artifacts, name), fullPage: true });
  const run = (script, until) => runCommand(page, script, { until });
  const text = async (entry) => entry.innerText();

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
    await page.locator('.console-input-line .console-prompt', { hasText: 'PS psgate>' }).waitFor();
  });

  after(async () => {
    await browser?.close();
    if (server) await stopServer(server);
  });

  test('the issue\'s lines: the module, then proxies that return the remote objects', async () => {
    await run('$session = New-PSSession -Name ad');
    await run('Invoke-Command -Command { Import-Module ActiveDirectory } -Session $session');
    const imported = await run('Import-PSSession -Session $session -Module ActiveDirectory -Prefix rem');
    assert.match(await text(imported), /tmp_[\s\S]*New-remADUser/);
    // The sessions panel shows the module by its session, and a reload keeps it (it lives in the relay).
    await page.locator('#sessions tr.session-row .session-module', { hasText: 'tmp_' }).waitFor();
    assert.match(await page.locator('#sessions tr.session-row .session-module').getAttribute('title'), /New-remADUser/);
    await page.reload();
    await page.locator('#sessions tr.session-row .session-module', { hasText: 'tmp_' }).waitFor();
    await page.locator('.console-input-line .console-prompt', { hasText: 'PS psgate>' }).waitFor();
    await run('New-remADUser -Name ada -SamAccountName ada');
    const users = await run('Get-remADUser -Filter * | Set-remADUser -Department Ops -PassThru | ft Name, SamAccountName, Department');
    const table = users.locator('table').first();
    await table.waitFor();
    assert.deepEqual(await table.locator('th').allTextContents(), ['Name', 'SamAccountName', 'Department']);
    assert.equal(await table.locator('tbody tr', { hasText: 'ada' }).count(), 1);
    assert.equal(await table.locator('tbody tr', { hasText: 'Ops' }).count(), await table.locator('tbody tr').count());
    await shot('implicit-users.png');
    // Without Format-Table, the server's view of ADUser (the module's format data) lays the users out: a table of
    // its four columns, not the list ten properties would make.
    const viewed = await run('Get-remADUser -Identity ada');
    const view = viewed.locator('table').first();
    await view.waitFor();
    assert.deepEqual(await view.locator('th').allTextContents(), ['Name', 'SamAccountName', 'Enabled', 'DistinguishedName']);
    assert.equal(await view.locator('tbody tr', { hasText: 'CN=ada,' }).count(), 1);
    await shot('implicit-view.png');
  });

  test('Get-Help shows the remote help under the prefixed name', async () => {
    const help = await run('Get-Help New-remADUser -Full');
    const shown = await text(help);
    assert.match(shown, /NAME\s+New-remADUser/);
    assert.match(shown, /-SamAccountName/);
    await shot('implicit-help.png');
  });

  test('Tab completes the proxy and its parameters', async () => {
    const input = page.locator('#console-input');
    await input.fill('New-remADU');
    await input.press('Tab');
    await page.waitForFunction(() => document.querySelector('#console-input').value === 'New-remADUser');
    await input.fill('New-remADUser -Sam');
    await input.press('Tab');
    await page.waitForFunction(() => document.querySelector('#console-input').value === 'New-remADUser -SamAccountName');
    await input.fill('');
  });

  test('Export-PSSession: the module\'s files download from the page', async () => {
    const exported = await run('Export-PSSession -Session $session -Module ActiveDirectory -OutputModule ADRemote');
    const links = exported.locator('.output-actions a.download');
    await links.first().waitFor();
    assert.deepEqual(await links.evaluateAll((as) => as.map((a) => a.getAttribute('download'))), ['ADRemote.psm1', 'ADRemote.psd1', 'ADRemote.format.ps1xml']);
    const [download] = await Promise.all([page.waitForEvent('download'), links.nth(1).click()]);
    assert.equal(download.suggestedFilename(), 'ADRemote.psd1');
    const file = await download.path();
    const manifest = (await import('node:fs')).readFileSync(file, 'utf8');
    assert.match(manifest, /RootModule = 'ADRemote\.psm1'/);
    assert.match(manifest, /FormatsToProcess = @\('ADRemote\.format\.ps1xml'\)/);
    await shot('implicit-export.png');
  });

  test('removing the session removes the module, and says so', async () => {
    const removed = await run('Get-PSSession | Remove-PSSession');
    await removed.locator('.stream-warning, .warning', { hasText: 'was removed with its commands' }).first().waitFor();
    const gone = await run('New-remADUser -Name x');
    await gone.locator('.stream-error, .error-record', { hasText: "The term 'New-remADUser' is not recognized" }).first().waitFor();
    assert.deepEqual(problems, []);
  });
});
