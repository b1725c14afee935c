// WinRM sessions end to end: the WS-Management test peer (tests/peers/winrm_host.py: NTLM with message encryption,
// Disconnect/Connect, output kept while disconnected) behind `psgate serve` with an allow-list naming it. In one
// browser: New-PSSession over WinRM through the form, a command, a long command, Disconnect-PSSession. Then another
// browser (a new context: other cookies, nothing shared) logs in as the same relay user, lists the target's shells
// (Get-PSSession -ComputerName), connects, and sees what the command wrote while nobody was connected.
//
//   scripts/build-frontend.sh && cargo build -p psgate-relay && source scripts/env.sh   # PSGATE_PYTHON
//   cd tests/e2e && npm ci && node --test winrm.test.mjs
//
// PSGATE_BIN, PSGATE_DIST and CHROMIUM as for the other suites; E2E_WS_LOG=1 prints every WebSocket frame (the
// WinRM password typed in the form among them: for a test peer's only). Screenshots go to tests/e2e/artifacts/.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { chromium } from 'playwright-core';

import { artifacts, browserPath, CHROMIUM_ARGS, requireBuilt, runCommand, startRelay, startWinrmPeer, stopServer, TIMEOUT, watch } from './harness.mjs';

const WINRM_USER = 'PSGATE\\ada';
const WINRM_PASSWORD = 'Secret-1';
/** Opening a WinRM session (NTLM, the pool's key exchange) takes longer than a local one. */
const SLOW = 45_000;

describe('winrm', () => {
  let dir;
  let peer;
  let relay;
  /** The relay's allow-list: the peer only. */
  let allow;
  let browser;
  let context;
  let page;
  const problems = [];
  const shot = (name) => page.screenshot({ path: path.join(artifacts, name), fullPage: true });
  /** The last "tick N" the first browser saw before disconnecting. */
  let lastTick = 0;

  /** A fresh browser context (its own cookies and storage: another browser) with the page open and watched. */
  async function open() {
    context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    watch(page, problems);
    if (process.env.E2E_WS_LOG) {
      page.on('websocket', (ws) => {
        ws.on('framesent', (f) => console.log('>', String(f.payload).slice(0, 400)));
        ws.on('framereceived', (f) => console.log('<', String(f.payload).slice(0, 400)));
      });
    }
    await page.goto(relay.url);
    await page.locator('#login-name').fill(relay.user);
    await page.locator('#login-password').fill(relay.password);
    await page.click('#login-submit');
    await page.locator('.topbar .link.open').waitFor();
  }

  /** Fills the New-PSSession form for the WinRM peer (NTLM, the password given). */
  async function fillWinrmForm(password = WINRM_PASSWORD) {
    await page.locator('#new-transport').selectOption('winrm');
    await page.locator('#new-computers').fill('127.0.0.1');
    await page.locator('#new-port').fill(String(peer.port));
    await page.locator('#new-authentication').selectOption('ntlm');
    await page.locator('#new-user').fill(WINRM_USER);
    await page.locator('#new-password').fill(password);
  }

  /** Types a command at the prompt and waits for its pipeline to end. */
  const run = (script) => runCommand(page, script, { scope: '.session-console', timeout: SLOW });

  /** The "tick N" lines an entry shows (a short text is one `<pre>` of lines). */
  const ticks = async (entry) =>
    (await entry.locator('pre.message').allTextContents())
      .flatMap((t) => t.split('\n'))
      .map((t) => t.match(/^tick (\d+)$/))
      .filter(Boolean)
      .map((m) => Number(m[1]));

  /** Waits until an entry shows "tick n". */
  async function waitForTick(entry, n, timeout = SLOW) {
    const end = Date.now() + timeout;
    while (!(await ticks(entry)).includes(n)) {
      if (Date.now() > end) throw new Error(`no "tick ${n}" within ${timeout} ms; seen: ${(await ticks(entry)).join(' ')}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  before(async () => {
    requireBuilt({ needPython: true });
    dir = mkdtempSync(path.join(tmpdir(), 'psgate-e2e-winrm-'));
    peer = await startWinrmPeer(['--user', `${WINRM_USER}:${WINRM_PASSWORD}`, '--auth', 'ntlm,basic']);
    allow = `[[allow]]\nhosts = ["127.0.0.1"]\nports = [${peer.port}]\ntransports = ["winrm"]\n`;
    relay = await startRelay(dir, allow);
    browser = await chromium.launch({ executablePath: browserPath, headless: true, args: CHROMIUM_ARGS });
    await open();
  });

  after(async () => {
    await browser?.close();
    if (relay) await stopServer(relay.server);
    if (peer) await stopServer(peer.peer);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the form offers WinRM: UseSSL, Authentication, ConfigurationName, default ports as placeholders', async () => {
    assert.equal(await page.locator('#new-use-ssl').isVisible(), false, 'WinRM fields only for WinRM');
    await page.locator('#new-transport').selectOption('winrm');
    await page.locator('#new-use-ssl').waitFor();
    assert.equal(await page.locator('#new-port').getAttribute('placeholder'), '5985');
    await page.locator('#new-use-ssl').check();
    assert.equal(await page.locator('#new-port').getAttribute('placeholder'), '5986');
    await page.locator('#new-use-ssl').uncheck();
    assert.equal(await page.locator('#new-port').getAttribute('placeholder'), '5985');
    assert.equal(await page.locator('#new-authentication').inputValue(), 'negotiate');
    assert.deepEqual(await page.locator('#new-authentication option').allTextContents(), ['Negotiate', 'NTLM', 'Kerberos', 'Basic']);
    assert.equal(await page.locator('#new-configuration').getAttribute('placeholder'), 'Microsoft.PowerShell');
    await page.locator('#get-remote-shells').waitFor();
    await shot('winrm-form.png');
  });

  test('a wrong password: the target refuses, and the page says so', async () => {
    await fillWinrmForm('not the password');
    await page.click('#get-remote-shells');
    const error = page.locator('#remote-shells .form-error');
    await error.waitFor({ timeout: SLOW });
    assert.match(await error.textContent(), /^authentication failed/);
    await shot('winrm-wrong-password.png');
  });

  test('New-PSSession over WinRM opens a session that runs commands', async () => {
    await fillWinrmForm();
    await page.click('#new-session');
    const row = page.locator('#sessions tr.session-row').first();
    await row.locator('td.state-opened').waitFor({ timeout: SLOW });
    const cells = (await row.locator('td').allTextContents()).slice(0, 6);
    assert.deepEqual(cells.slice(2), ['127.0.0.1', 'WSMan', 'Opened', 'Available']);
    // What was typed is still there after all those re-renders (no controlled `value` put back over it).
    assert.equal(await page.locator('#new-user').inputValue(), WINRM_USER);
    assert.equal(await page.locator('#new-port').inputValue(), String(peer.port));
    const entry = await run('Write-Output hello');
    await entry.locator('pre.message', { hasText: /^hello$/ }).waitFor();
    assert.equal(await row.locator('.disconnect-session').isEnabled(), true);
    assert.equal(await row.locator('.connect-session').isEnabled(), false);
    await shot('winrm-session.png');
  });

  test('Disconnect-PSSession leaves the command running; the console keeps its output and refuses input', async () => {
    await page.locator('#console-input').fill('Test-Long -Seconds 12');
    await page.locator('#console-input').press('Enter');
    const entry = page.locator('.session-console .console-entry').last();
    await waitForTick(entry, 3);
    await page.locator('#disconnect-idle').fill('600');
    await page.locator('#disconnect-buffering').selectOption('block');
    const row = page.locator('#sessions tr.session-row').first();
    await row.locator('.disconnect-session').click();
    await row.locator('td.state-disconnected').waitFor({ timeout: SLOW });
    assert.equal(await row.locator('.connect-session').isEnabled(), true);
    await page.locator('#console-disconnected', { hasText: 'disconnected — Connect to continue' }).waitFor();
    assert.equal(await page.locator('#console-input').isDisabled(), true);
    lastTick = Math.max(...(await ticks(entry)));
    assert.ok(lastTick >= 3, `ticks before the disconnect: ${lastTick}`);
    await page.locator('.session-console pre.message', { hasText: /^hello$/ }).waitFor();
    await shot('winrm-disconnected.png');
  });

  test('another browser lists the shells the target keeps and connects: the output made meanwhile arrives', async () => {
    await context.close();
    // Nobody reads for a while: the command goes on writing on the target.
    await new Promise((r) => setTimeout(r, 2_000));
    await open();
    const row = page.locator('#sessions tr.session-row').first();
    await row.locator('td.state-disconnected').waitFor({ timeout: SLOW });
    await fillWinrmForm();
    await page.click('#get-remote-shells');
    const shell = page.locator('#remote-shells tr.remote-shell', { hasText: 'Disconnected' }).first();
    await shell.waitFor({ timeout: SLOW });
    const cells = await shell.locator('td').allTextContents();
    assert.match(cells[0], /^[0-9A-Fa-f-]{36}$/, `InstanceId: ${cells[0]}`);
    assert.equal(cells[2], 'Disconnected');
    assert.match(cells[3], /ada/i, `Owner: ${cells[3]}`);
    assert.equal(cells[4], 'Microsoft.PowerShell');
    await shot('winrm-remote-shells.png');
    // Connect-PSSession: to the relay's disconnected session when it says it holds the shell, else a new session on
    // the shell (new_sessions with its shell_id).
    await shell.locator('.connect-shell').click();
    const opened = page.locator('#sessions tr.session-row', { has: page.locator('td.state-opened') }).first();
    await opened.waitFor({ timeout: SLOW });
    await opened.click();
    const entry = page.locator('.session-console .console-entry', { has: page.locator('pre.message', { hasText: /^tick \d+$/m }) }).last();
    // Output written while nobody was connected (2 s of ticks at 10 a second after the last one seen), then the end.
    await waitForTick(entry, lastTick + 15);
    await page.locator('#console-input[placeholder=""]').waitFor({ timeout: SLOW });
    const seen = await ticks(entry);
    assert.ok(seen.length > 0 && seen.every((t, i) => i === 0 || t === seen[i - 1] + 1), `ticks in order without a gap: ${seen.join(' ')}`);
    const command = await entry.locator('.console-command').textContent();
    assert.match(command, /Test-Long -Seconds 12$|\(connected pipeline[^)]*\)$/);
    await shot('winrm-connected.png');
    const after = await run('Write-Output again');
    await after.locator('pre.message', { hasText: /^again$/ }).waitFor();
  });

  test('after a relay restart the session is disconnected; Connect brings back its running command', async () => {
    await page.locator('#console-input').fill('Test-Long -Seconds 15');
    await page.locator('#console-input').press('Enter');
    const running = page.locator('.session-console .console-entry').last();
    await waitForTick(running, 3);
    const row = page.locator('#sessions tr.session-row', { has: page.locator('td.state-opened') }).first();
    const id = await row.getAttribute('data-id');
    await row.locator('.disconnect-session').click();
    await page.locator(`#sessions tr.session-row[data-id="${id}"] td.state-disconnected`).waitFor({ timeout: SLOW });
    const seen = Math.max(...(await ticks(running)));
    await context.close();
    await stopServer(relay.server);
    relay = await startRelay(dir, allow);
    await open();
    // The relay kept what Connect needs (never the password in clear): the session is back, disconnected.
    const kept = page.locator('#sessions tr.session-row', { has: page.locator('td.state-disconnected') }).first();
    await kept.waitFor({ timeout: SLOW });
    await kept.click();
    await kept.locator('.connect-session').click();
    await page.locator('#sessions tr.session-row td.state-opened').first().waitFor({ timeout: SLOW });
    // The command this page never ran comes back as an entry of its own, its output made meanwhile in it.
    const entry = page.locator('.session-console .console-entry', { has: page.locator('pre.message', { hasText: /^tick \d+$/m }) }).last();
    await waitForTick(entry, seen + 15);
    // Its script, when the relay still knows it; else what the relay or the page calls a connected pipeline.
    assert.match(await entry.locator('.console-command').textContent(), /Test-Long -Seconds 15$|\(connected pipeline[^)]*\)$/);
    await page.locator('#console-input[placeholder=""]').waitFor({ timeout: SLOW });
    await shot('winrm-after-restart.png');
  });

  test('Remove all closes the WinRM sessions', async () => {
    await page.click('#remove-all');
    await page.locator('#sessions tr.session-row').first().waitFor({ state: 'detached', timeout: SLOW });
  });

  test('the pages raised no errors', () => {
    assert.deepEqual(problems, []);
  });
});
