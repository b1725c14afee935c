// The CLIXML viewer end to end: the real relay serving the real Trunk build, driven in Debian's headless Chromium.
//
//   scripts/build-frontend.sh && cargo build -p psgate-relay
//   cd tests/e2e && npm ci && npm test
//
// PSGATE_BIN (default <repo>/target/debug/psgate) and PSGATE_DIST (default <repo>/dist) say what to test;
// CHROMIUM (default /usr/bin/chromium) which browser. Screenshots go to tests/e2e/artifacts/.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { artifacts, launch, repo, requireBuilt, startServer, stopServer, watch } from './harness.mjs';

const fixture = (name) => readFileSync(path.join(repo, 'shared/test_data/clixml', name), 'utf8');

describe('CLIXML viewer', () => {
  let server;
  let browser;
  let page;
  const problems = [];

  before(async () => {
    requireBuilt();
    let url;
    ({ server, url } = await startServer());
    browser = await launch();
    ({ page } = browser);
    watch(page, problems);
    await page.goto(new URL('viewer', url).href);
    await page.locator('#load-sample').waitFor();
  });

  after(async () => {
    await browser?.close();
    if (server) await stopServer(server);
  });

  test('the sample shows its processes as a list, and as a table on demand', async () => {
    await page.click('#load-sample');
    const objects = page.locator('.console .objects').first();
    const list = objects.locator('.format-list');
    await list.waitFor();
    // Eight properties and no view for Selected.System.Diagnostics.Process: Format-List, names padded to the longest.
    assert.equal(await list.locator('.list-record').count(), 3);
    const pwsh = list.locator('.list-record', { hasText: 'pwsh' });
    assert.deepEqual((await pwsh.locator('.list-name').allTextContents()).slice(0, 2), ['Id           ', 'ProcessName  ']);
    assert.deepEqual((await pwsh.locator('.list-value').allTextContents()).slice(0, 6), [
      '4242',
      'pwsh',
      '12.34375',
      '104857600',
      '2026-11-25 08:15:02',
      'Normal',
    ]);
    assert.equal(await pwsh.locator('.list-line').first().textContent(), 'Id            : 4242');

    await objects.locator('button.view-table').click();
    const table = objects.locator('.format-table');
    const headers = await table.locator('th').allTextContents();
    assert.deepEqual(headers.slice(0, 4), ['Id', 'ProcessName', 'CPU', 'WorkingSet64']);
    const row = table.locator('tbody tr', { hasText: 'pwsh' });
    assert.deepEqual((await row.locator('td').allTextContents()).slice(0, 6), [
      '4242',
      'pwsh',
      '12.34375',
      '104857600',
      '2026-11-25 08:15:02',
      'Normal',
    ]);
    assert.equal(await table.locator('tbody tr').count(), 3);
    const align = await table.locator('th').first().evaluate((th) => getComputedStyle(th).textAlign);
    assert.equal(align, 'right', 'numeric columns are right-aligned, as Format-Table does');
    assert.match(await page.locator('#decode-summary').textContent(), /CLIXML document · 7 objects · with the #< CLIXML line/);
    await page.screenshot({ path: path.join(artifacts, 'sample.png'), fullPage: true });
  });

  test('opening tree nodes shows nested properties', async () => {
    const tree = page.locator('#object-tree');
    const pwsh = tree.locator(':scope > li').nth(1);
    await pwsh.locator(':scope > .node-head').click();
    assert.equal(await pwsh.getAttribute('aria-expanded'), 'true');
    assert.match(await pwsh.locator('.type-names').first().textContent(), /Selected\.System\.Diagnostics\.Process/);

    const mainModule = pwsh.locator('li.node', { has: page.locator(':scope > .node-head .node-label', { hasText: /^MainModule$/ }) });
    await mainModule.locator(':scope > .node-head').click();
    const fileName = mainModule.locator('li.node', { has: page.locator(':scope > .node-head .node-label', { hasText: /^FileName$/ }) });
    await fileName.waitFor();
    assert.equal(await fileName.locator('.node-summary').textContent(), '"C:\\Program Files\\PowerShell\\7\\pwsh.exe"');
    assert.equal(await fileName.locator('.badge.origin').textContent(), 'Props');
    assert.equal(await fileName.locator('.tag').textContent(), 'S');

    // The keyboard opens nodes too: an enum shows the number it wraps.
    const priority = pwsh.locator('li.node', { has: page.locator(':scope > .node-head .node-label', { hasText: /^PriorityClass$/ }) });
    await priority.locator(':scope > .node-head').press('Enter');
    const wrapped = priority.locator('li.node', { has: page.locator(':scope > .node-head .node-label', { hasText: /^value$/ }) });
    assert.equal(await wrapped.locator('.node-summary').textContent(), '32');

    // pwsh's Parent is a <Ref> to the first object: marked as the same object, not copied.
    const parent = pwsh.locator('li.node', { has: page.locator(':scope > .node-head .node-label', { hasText: /^Parent$/ }) });
    assert.equal(await parent.locator(':scope > .node-head .badge.shared').textContent(), 'shared #1');
    const explorer = tree.locator(':scope > li').first();
    assert.equal(await explorer.locator(':scope > .node-head .badge.shared').textContent(), 'shared #1');
    await page.locator('#object-tree').screenshot({ path: path.join(artifacts, 'tree.png') });
  });

  test('the other streams are styled like PowerShell', async () => {
    const error = page.locator('.console pre.message.stream-error');
    assert.match(await error.textContent(), /^Cannot find a process with the name "notepad"\./);
    assert.match(await error.textContent(), /\+ FullyQualifiedErrorId : NoProcessFoundForGivenName/);
    assert.equal(await error.evaluate((e) => getComputedStyle(e).color), 'rgb(231, 72, 86)');
    const warning = page.locator('.console pre.message.stream-warning');
    assert.equal(await warning.textContent(), 'WARNING: Access to 3 processes was denied; run the session elevated to see them all.');
    assert.equal(await warning.evaluate((e) => getComputedStyle(e).color), 'rgb(249, 241, 165)');
    assert.match(await page.locator('.console pre.message.stream-verbose').textContent(), /^VERBOSE: /);
    const bar = page.locator('.console .progress-track');
    assert.equal(await bar.getAttribute('aria-valuenow'), '60');
    // In the tree too: the error item is red.
    const errorItem = page.locator('#object-tree > li.stream-error');
    assert.equal(await errorItem.locator('.node-label').first().textContent(), '#5');
    assert.equal(await errorItem.locator('.node-label').first().evaluate((e) => getComputedStyle(e).color), 'rgb(207, 34, 46)');
  });

  test('a pasted PowerShell stderr document decodes', async () => {
    await page.fill('#clixml-input', fixture('test_sanitise_clixml_with_error.xml'));
    await page.locator('#decode-summary', { hasText: '10 objects' }).waitFor();
    // Two records of one activity: one bar, updated, as the console shows it.
    assert.equal(await page.locator('.console .progress.completed').count(), 1);
    // Eight <S S="Error"> lines make one red block, as powershell.exe printed them.
    const error = page.locator('.console pre.message.stream-error');
    assert.equal(await error.count(), 1);
    const text = await error.textContent();
    assert.match(text, /^fake : The term 'fake' is not recognized as the name of a cmdlet/);
    assert.match(text, /\n {4}\+ CategoryInfo {10}: ObjectNotFound: \(fake:String\) \[\], CommandNotFoundException\n/);
    await page.screenshot({ path: path.join(artifacts, 'stderr-document.png'), fullPage: true });
  });

  test('a pasted PSRP message decodes as one object', async () => {
    await page.fill('#clixml-input', fixture('psrp_error_record.xml'));
    await page.locator('#decode-summary', { hasText: 'PSRP message · 1 object' }).waitFor();
    const error = page.locator('.console pre.message.stream-error');
    assert.match(await error.textContent(), /^error stream\n {4}\+ CategoryInfo {10}: NotSpecified: \(:\) \[Write-Error\], WriteErrorException/);
  });

  test('a self-referencing hashtable is a finite tree', async () => {
    // $h = @{ Name = 'loop' }; $h.Self = $h; $h | Export-Clixml
    await page.fill(
      '#clixml-input',
      '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04"><Obj RefId="0">' +
        '<TN RefId="0"><T>System.Collections.Hashtable</T><T>System.Object</T></TN><DCT>' +
        '<En><S N="Key">Name</S><S N="Value">loop</S></En><En><S N="Key">Self</S><Ref N="Value" RefId="0" /></En>' +
        '</DCT></Obj></Objs>',
    );
    const table = page.locator('.console .format-table');
    await table.waitFor();
    assert.deepEqual(await table.locator('th').allTextContents(), ['Name', 'Value']);
    assert.deepEqual(await table.locator('tbody tr').nth(1).locator('td').allTextContents(), ['Self', '(cycle)']);
    const root = page.locator('#object-tree > li').first();
    await root.locator(':scope > .node-head').click();
    const self = root.locator('li.node.cycle');
    assert.equal(await self.locator('.node-label').textContent(), 'Self');
    assert.equal(await self.locator('.node-summary').textContent(), '↻ back to the enclosing System.Collections.Hashtable (1 level up)');
    assert.equal(await self.getAttribute('aria-expanded'), null, 'a cycle is a leaf');
  });

  test('a malformed paste shows the error and its line', async () => {
    const input = '#< CLIXML\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">\n  <I32>12x</I32>\n</Objs>';
    await page.fill('#clixml-input', input);
    const failure = page.locator('.decode-error');
    await failure.waitFor();
    assert.equal(await failure.getAttribute('role'), 'alert');
    assert.equal(await failure.locator('.decode-error-message').textContent(), 'invalid I32 value "12x"');
    assert.equal(await failure.locator('.decode-error-position').textContent(), 'line 3, column 8');
    assert.equal(await failure.locator('.decode-error-excerpt').textContent(), '  <I32>12x</I32>\n       ^');
    assert.equal(await page.locator('.console').count(), 0);
    await page.screenshot({ path: path.join(artifacts, 'malformed.png'), fullPage: true });
  });

  test('the page raised no errors', () => {
    assert.deepEqual(problems, []);
  });
});
