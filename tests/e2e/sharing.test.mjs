// Sharing a session and the audit page in the browser (issue 20), with two relays on one PostgreSQL database: each
// person's browser reaches a relay of its own. The owner (e2e, on relay-a) shares a session from the sessions panel;
// bob (on relay-b) finds it under "Shared with you" and opens it on the watch page (/watch/?join=…), which shows the
// session's commands from the first, then what the owner types, live, with who is present; an observer's console
// takes no input; revoking closes it at once. A moderated session's command waits until the moderator (root, on
// relay-b) approves it from the watch page. root, a relay admin, then finds a command on the audit page by what it
// returned and replays its session through the console's renderers.
//
//   eval "$(bash scripts/postgres.sh)"; scripts/build-frontend.sh && cargo build -p psgate-relay && source scripts/env.sh
//   cd tests/e2e && npm ci && node --test sharing.test.mjs
//
// Screenshots go to tests/e2e/artifacts/sharing-*.png.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { chromium } from 'playwright-core';

import { artifacts, bin, browserPath, CHROMIUM_ARGS, POSTGRES, psql, python, repo, requireBuilt, runCommand, startSiteRelay as startRelay, stopServer, TIMEOUT, watch } from './harness.mjs';

const PASSWORD = 'e2e-sharing-pw';

describe('sharing and the audit page', { skip: !POSTGRES && 'PSGATE_TEST_POSTGRES is not set (eval "$(bash scripts/postgres.sh)")' }, () => {
  let dir;
  let a;
  let b;
  let browser;
  let owner;
  let observer;
  let admin;
  let moderator;
  const db = `psgate_e2e_sharing_${process.pid}`;
  const problems = [];

  async function login(relay, name) {
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    // A joined console closed by its revocation is the relay's word, not a problem.
    watch(page, problems, (url, status) => status === 401 && /\/api\/me$/.test(url));
    await page.goto(relay.url);
    await page.locator('#login-name').fill(name);
    await page.locator('#login-password').fill(PASSWORD);
    await page.click('#login-submit');
    await page.locator('.topbar .link.open').waitFor();
    return page;
  }

  async function openSession(page, computer) {
    await page.locator('#new-transport').selectOption('local');
    await page.locator('#new-computers').fill(computer);
    await page.click('#new-session');
    const row = page.locator('#sessions tr.session-row', { hasText: computer }).first();
    await row.locator('td.state-opened').waitFor();
    await row.click();
    return row;
  }

  before(async () => {
    requireBuilt({ needPython: true });
    dir = mkdtempSync(path.join(tmpdir(), 'psgate-e2e-sharing-'));
    psql(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    psql(`CREATE DATABASE ${db}`);
    const database = `${POSTGRES.replace(/\/[^/]*$/, '')}/${db}`;
    const host = JSON.stringify(path.join(repo, 'tests/peers/psrp_host.py'));
    // "moderated": the same local peer under a rule whose pipelines wait for root's approval (typed text never passes).
    const config =
      `local_command = [${JSON.stringify(python)}, ${host}]\n` +
      `[[allow]]\nhosts = ["localhost"]\ntransports = ["local"]\n` +
      `[[allow]]\nhosts = ["moderated"]\ntransports = ["local"]\nmoderation = { moderators = ["root", "mod"], pass = ["Get-*"] }\n`;
    a = await startRelay(dir, 'relay-a', database, config);
    b = await startRelay(dir, 'relay-b', database, config);
    for (const [name, flags] of [['e2e', []], ['bob', []], ['root', ['--admin']], ['mod', []]]) {
      const add = spawnSync(bin, ['user', 'add', name, ...flags, '--config', a.file], { input: `${PASSWORD}\n`, encoding: 'utf8' });
      assert.equal(add.status, 0, add.stderr);
    }
    browser = await chromium.launch({ executablePath: browserPath, headless: true, args: CHROMIUM_ARGS });
    // Three people, three contexts (three cookies); the owner on relay-a, the others on relay-b.
    owner = await login(a, 'e2e');
    observer = await login(b, 'bob');
    admin = await login(b, 'root');
    // A second moderator, whose console is served by the owner's relay.
    moderator = await login(a, 'mod');
  });

  after(async () => {
    await browser?.close();
    for (const r of [a, b]) if (r) await stopServer(r.server);
    if (dir) rmSync(dir, { recursive: true, force: true });
    try {
      psql(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    } catch {
      // the server may be gone already
    }
  });

  test('the owner shares a session; the observer, on another relay, sees its commands, then the owner\'s, live, and cannot type', async () => {
    const row = await openSession(owner, 'localhost');
    await runCommand(owner, "Write-Output 'before sharing'");
    // The share dialog: whom, and as what.
    await row.locator('.share-session').click();
    await owner.locator('#share-user').fill('bob');
    await owner.locator('#share-role').selectOption('observer');
    await owner.click('#share-submit');
    await row.locator('.unshare-session').waitFor();

    // Bob's page, on another relay, is told within five heartbeats (5 s here; a page on the owner's relay at once).
    const link = observer.locator('#shared-with-me a.join-link');
    await link.waitFor();
    assert.equal(await link.textContent(), "e2e's session 1");
    await observer.goto(new URL(await link.getAttribute('href'), b.url).toString());
    await observer.locator('#joined h2', { hasText: "e2e's session, shared with you: you are an observer" }).waitFor();
    await observer.locator('#present', { hasText: 'bob (observer)' }).waitFor();
    assert.equal(await observer.locator('#present').textContent(), 'Present: e2e (owner), bob (observer)');
    // The backlog, from the first command.
    await observer.locator('.console-entry', { hasText: 'before sharing' }).waitFor();
    // Live: what the owner types appears, once.
    await runCommand(owner, "Write-Output 'typed by the owner'");
    await observer.locator('.console-entry', { hasText: 'typed by the owner' }).waitFor();
    assert.equal(await observer.locator('.console-entry', { hasText: 'typed by the owner' }).count(), 1);
    // The owner sees who is there.
    await owner.locator('#present', { hasText: 'bob (observer)' }).waitFor();
    // An observer types nothing.
    assert.ok(await observer.locator('#console-input').isDisabled());
    await observer.screenshot({ path: path.join(artifacts, 'sharing-observer.png'), fullPage: true });
  });

  test("revoking closes the observer's console at once", async () => {
    const revoke = owner.locator('#sessions tr.session-row .unshare-session');
    assert.equal(await revoke.textContent(), '✕ bob');
    await revoke.click();
    await revoke.waitFor({ state: 'detached' });
    await observer.locator('.notices', { hasText: 'stopped sharing' }).waitFor();
    assert.equal(await observer.locator('.console-entry').count(), 0, 'the session left the page');
    // Nothing more arrives.
    await runCommand(owner, "Write-Output 'after revoking'");
    await owner.waitForTimeout(500);
    assert.equal(await observer.locator('.console-entry', { hasText: 'after revoking' }).count(), 0);
    // The link again: refused, and said so.
    await observer.reload();
    await observer.locator('#join-refused', { hasText: 'Could not join e2e/1' }).waitFor();
    assert.equal(await observer.locator('.console-entry').count(), 0);
    await observer.goto(b.url);
    // The refusals the page met (403 at the WebSocket's handshake, which the browser logs) were the point; leaving
    // the page cuts short the login check its next try makes.
    const refused = (p) => (p.includes('/api/ws?join=e2e%2F1') && p.includes('403')) || /^request failed: .*\/api\/me$/.test(p);
    problems.splice(0, problems.length, ...problems.filter((p) => !refused(p)));
  });

  test("a moderated session's command waits until the moderator approves it on the watch page", async () => {
    await openSession(owner, 'moderated');
    const sessionId = await owner.locator('#sessions tr.session-row', { hasText: 'moderated' }).locator('td.num').first().textContent();
    // root moderates this rule: he may open the session without an invitation.
    await admin.goto(`${b.url}/watch/?join=e2e%2F${sessionId.trim()}`);
    await admin.locator('#present', { hasText: 'root (observer)' }).waitFor();
    await owner.locator('#console-input').fill("Write-Output 'approved output'");
    await owner.locator('#console-input').press('Enter');
    await owner.locator('.console-entry', { hasText: "waits for a moderator's approval" }).waitFor();
    const prompt = admin.locator('.approval', { hasText: "e2e asks to run: Write-Output 'approved output'" });
    await prompt.waitFor();
    // The other moderator's console says what waits, with a link to the session.
    const waiting = moderator.locator('.approval-waiting', { hasText: "e2e asks to run Write-Output 'approved output' in e2e's session" });
    await waiting.waitFor();
    assert.equal(await waiting.locator('a.decide').getAttribute('href'), `/watch/?join=e2e%2F${sessionId.trim()}`);
    await admin.screenshot({ path: path.join(artifacts, 'sharing-approval.png'), fullPage: true });
    await prompt.locator('.approve').click();
    await prompt.waitFor({ state: 'detached' });
    await waiting.waitFor({ state: 'detached' });
    await owner.locator('.console-entry .block', { hasText: 'approved output' }).waitFor();
    // The moderator's console names the command it approved and shows what it wrote.
    const approved = admin.locator('.console-entry', { hasText: "Write-Output 'approved output'" });
    await approved.locator('.block', { hasText: 'approved output' }).waitFor();
    await approved.locator('.block', { hasText: 'Approved by root.' }).waitFor();
  });

  test('the admin finds a command by what it returned and replays its session', async () => {
    await owner.locator('#sessions tr.session-row', { hasText: 'localhost' }).click();
    await runCommand(owner, 'Get-Service -Name Spooler');
    await runCommand(owner, "throw 'boom in the replay'");
    // The console's Audit link (an admin's).
    await admin.goto(b.url);
    await admin.click('#audit-link');
    await admin.locator('#audit-search').waitFor();
    await admin.locator('#audit-result').fill('Name=Spooler');
    // Records are written in batches: search until the pipeline's record is there.
    const found = admin.locator('#audit-records tr.kind-pipeline', { hasText: 'Get-Service -Name Spooler' });
    for (let i = 0; i < 50 && (await found.count()) === 0; i++) {
      await admin.click('#audit-submit');
      await admin.locator('#audit-count').waitFor();
      if ((await found.count()) === 0) await admin.waitForTimeout(200);
    }
    assert.equal(await found.count(), 1);
    assert.equal(await admin.locator('#audit-records tr.audit-record').count(), 1, 'only the pipeline that returned Spooler');
    await found.locator('.open-timeline').click();
    await admin.locator('#timeline h2', { hasText: "e2e's session 1 on localhost" }).waitFor();
    // Its timeline: opened, shared, joined, the commands.
    for (const kind of ['session_opened', 'sharing', 'pipeline']) assert.ok((await admin.locator(`#timeline li.kind-${kind}`).count()) > 0, kind);
    await admin.locator('#replay-speed').selectOption('16');
    await admin.click('#replay');
    // Replayed through the console's renderers: the commands as typed, Get-Service's table with its columns.
    await admin.locator('#timeline .console-entry', { hasText: 'before sharing' }).waitFor();
    const table = admin.locator('#timeline .console-entry', { hasText: 'Get-Service -Name Spooler' }).locator('table.format-table');
    await table.waitFor();
    assert.match(await table.textContent(), /Status.*Name.*DisplayName.*Spooler.*Print Spooler/s);
    // The terminating error, as the console shows one, and the command's end.
    const failed = admin.locator('#timeline .console-entry', { hasText: "throw 'boom in the replay'" });
    await failed.locator('.stream-error', { hasText: 'boom in the replay' }).first().waitFor();
    await failed.locator('.pipeline-end', { hasText: 'Failed' }).waitFor();
    await admin.screenshot({ path: path.join(artifacts, 'sharing-replay.png'), fullPage: true });
    assert.deepEqual(problems, []);
  });
});
