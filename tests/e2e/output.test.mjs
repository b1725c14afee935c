// Output rendering end to end: a table of thousands of rows drawn a screenful at a time and scrolled to its end,
// the Table / List / Members / Tree toolbar, Copy CSV and Copy JSON through the real clipboard, Write-Host's
// colours, escape sequences and nested progress. The real relay, the real Trunk build, Debian's headless Chromium.
//
//   scripts/build-frontend.sh && cargo build -p psgate-relay && source scripts/env.sh   # PSGATE_PYTHON
//   cd tests/e2e && npm ci && npm test
//
// PSGATE_BIN (default <repo>/target/debug/psgate) and PSGATE_DIST (default <repo>/dist) say what to test;
// CHROMIUM (default /usr/bin/chromium) which browser. Screenshots go to tests/e2e/artifacts/.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { artifacts, launch, requireBuilt, runCommand, startServer, stopServer, watch } from './harness.mjs';

const ROWS = 5000;
const ROW_PX = 19; // frontend/src/components/output.rs

describe('output', () => {
  let server;
  let browser;
  let context;
  let page;
  let demo;
  const problems = [];
  const shot = (name) => page.screenshot({ path: path.join(artifacts, name), fullPage: true });

  /** Types a command at the prompt and waits for its pipeline to end. */
  const run = (script) => runCommand(page, script);

  /** What the clipboard holds. */
  const clipboard = () => page.evaluate(() => navigator.clipboard.readText());

  before(async () => {
    requireBuilt();
    demo = await startServer();
    server = demo.server;
    browser = await launch();
    ({ context, page } = browser);
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(demo.url).origin });
    watch(page, problems);
    await page.goto(demo.url);
    await page.locator('#login-name').fill(demo.user);
    await page.locator('#login-password').fill(demo.password);
    await page.click('#login-submit');
    await page.locator('.topbar .link.open').waitFor();
    await page.locator('#new-computers').fill('localhost');
    await page.click('#new-session');
    await page.locator('#sessions tr.session-row td.state-opened').first().waitFor();
    await page.locator('.session-console .console-input-line .console-prompt', { hasText: /^\[localhost\]: PS/ }).waitFor();
  });

  after(async () => {
    await browser?.close();
    if (server) await stopServer(server);
  });

  test(`a table of ${ROWS} rows draws a screenful and scrolls to its last row`, async () => {
    const entry = await run(`Get-Objects -Count ${ROWS}`);
    const objects = entry.locator(`.objects[data-rows="${ROWS}"]`);
    await objects.waitFor();
    const table = objects.locator('.format-table');
    assert.deepEqual(await table.locator('th').allTextContents(), ['Index', 'Name', 'Even']);
    assert.equal(await table.locator('th').first().evaluate((th) => getComputedStyle(th).textAlign), 'right', 'numbers right-aligned');
    const drawn = await table.locator('tbody tr:not(.spacer)').count();
    assert.ok(drawn > 10 && drawn < 100, `${drawn} rows in the DOM for ${ROWS}`);
    const viewport = objects.locator('.table-viewport');
    assert.ok((await viewport.evaluate((el) => el.scrollHeight)) >= ROWS * ROW_PX, 'the scrollbar spans every row');

    await viewport.evaluate((el, top) => { el.scrollTop = top; }, 2500 * ROW_PX);
    await table.locator('td', { hasText: /^object 2500$/ }).waitFor();
    await viewport.evaluate((el) => { el.scrollTop = el.scrollHeight; });
    const last = table.locator('tbody tr', { has: page.locator('td', { hasText: /^object 4999$/ }) });
    await last.waitFor();
    assert.deepEqual(await last.locator('td').allTextContents(), ['4999', 'object 4999', 'False']);
    assert.ok((await table.locator('tbody tr:not(.spacer)').count()) < 100, 'still a screenful after scrolling');
    await shot('output-scrolled.png');
  });

  test('the toolbar shows the objects as a list, as Get-Member and as trees', async () => {
    const objects = page.locator('.console-entry').last().locator('.objects');
    await objects.locator('button.view-list').click();
    assert.equal(await objects.getAttribute('data-mode'), 'list');
    const first = objects.locator('.list-record').first();
    assert.deepEqual(await first.locator('.list-line').allTextContents(), ['Index : 0', 'Name  : object 0', 'Even  : True']);

    await objects.locator('button.view-members').click();
    assert.equal(await objects.locator('.members-type-name').textContent(), 'TypeName: System.Management.Automation.PSCustomObject');
    const rows = await objects.locator('.members-table tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
    assert.deepEqual(rows.slice(4), [
      ['Even', 'NoteProperty', 'bool Even=True'],
      ['Index', 'NoteProperty', 'int Index=0'],
      ['Name', 'NoteProperty', 'string Name=object 0'],
    ]);
    assert.deepEqual(rows[2], ['GetType', 'Method', 'type GetType()']);
    await shot('output-members.png');

    await objects.locator('button.view-tree').click();
    const node = objects.locator('.output-tree .tree > li').first();
    assert.equal(await node.locator('.node-label').first().textContent(), '#0');
    await node.locator(':scope > .node-head').click();
    await node.locator('li.node', { has: page.locator(':scope > .node-head .node-label', { hasText: /^Name$/ }) }).waitFor();

    await objects.locator('button.view-table').click();
    await objects.locator('.format-table').waitFor();
    assert.equal(await objects.locator('button.view-table').getAttribute('aria-pressed'), 'true');
  });

  test('Copy CSV and Copy JSON put every row on the clipboard', async () => {
    const objects = page.locator('.console-entry').last().locator('.objects');
    await objects.locator('button.copy-csv').click();
    await objects.locator('.copy-status', { hasText: `copied ${ROWS} rows as CSV` }).waitFor();
    const lines = (await clipboard()).split('\r\n');
    assert.equal(lines.length, ROWS + 1);
    assert.deepEqual(lines.slice(0, 3), ['"Index","Name","Even"', '"0","object 0","True"', '"1","object 1","False"']);

    await objects.locator('button.copy-json').click();
    await objects.locator('.copy-status', { hasText: `copied ${ROWS} rows as JSON` }).waitFor();
    const rows = JSON.parse(await clipboard());
    assert.equal(rows.length, ROWS);
    assert.deepEqual(rows[ROWS - 1], { Index: ROWS - 1, Name: `object ${ROWS - 1}`, Even: false });
  });

  test('selected table cells copy as tab-separated lines, without the toolbar', async () => {
    const table = page.locator('.console-entry').last().locator('.format-table');
    const text = await table.evaluate((t) => {
      const range = document.createRange();
      range.setStartBefore(t.tHead);
      range.setEndAfter(t.tBodies[0].rows[2]);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      const copied = selection.toString();
      selection.removeAllRanges();
      return copied;
    });
    assert.match(text, /^Index\tName\tEven\n/);
    assert.doesNotMatch(text, /Copy CSV/);
    assert.equal(await page.locator('.output-toolbar').first().evaluate((e) => getComputedStyle(e).userSelect), 'none');
  });

  test("Write-Host draws its console colours", async () => {
    const entry = await run('Write-Host -ForegroundColor Red -BackgroundColor DarkBlue "red on blue"');
    const span = entry.locator('pre.message.stream-information span.styled');
    assert.equal(await span.textContent(), 'red on blue');
    assert.equal(await span.evaluate((e) => getComputedStyle(e).color), 'rgb(231, 72, 86)');
    assert.equal(await span.evaluate((e) => getComputedStyle(e).backgroundColor), 'rgb(0, 55, 218)');
  });

  test('escape sequences are styled, never shown', async () => {
    const entry = await run("Write-Output '\x1b[32mgreen\x1b[0m plain\x1b]0;title\x07'");
    const message = entry.locator('pre.message');
    assert.equal(await message.textContent(), 'green plain');
    assert.equal(await message.locator('span.styled').evaluate((e) => getComputedStyle(e).color), 'rgb(19, 161, 14)');
  });

  test('nested progress is indented under its parent, with the time left', async () => {
    const entry = await run(
      'Write-Progress -Activity Outer -Id 1 -PercentComplete 50 -SecondsRemaining 3725; Write-Progress -Activity Inner -Id 2 -ParentId 1 -PercentComplete 20 -Status Copying',
    );
    const bars = entry.locator('.progress-group .progress');
    await bars.nth(1).waitFor();
    const shown = await bars.evaluateAll((b) => b.map((e) => [e.querySelector('.progress-activity').textContent, e.dataset.depth]));
    assert.deepEqual(shown, [['Outer', '0'], ['Inner', '1']]);
    assert.match(await bars.nth(0).locator('.progress-status').textContent(), /1:02:05 remaining/);
    const childLeft = await bars.nth(1).evaluate((e) => e.getBoundingClientRect().left);
    const parentLeft = await bars.nth(0).evaluate((e) => e.getBoundingClientRect().left);
    assert.ok(childLeft > parentLeft, 'the child is indented');
    await shot('output-progress.png');

    const done = await run('Write-Progress -Activity Outer -Id 1 -PercentComplete 60; Write-Progress -Activity Inner -Id 2 -ParentId 1 -Completed');
    await done.locator('.progress-group .progress').first().waitFor();
    assert.deepEqual(await done.locator('.progress-group .progress .progress-activity').allTextContents(), ['Outer'], 'a completed child is gone');
  });

  test('the page raised no errors', () => {
    assert.deepEqual(problems, []);
  });
});
