// A relay killed under a browser (issue 19): three `psgate serve` relays on one PostgreSQL database behind nginx running
// deploy/nginx.conf as shipped, and the WS-Management test peer. The page, reached through nginx, opens a WinRM session
// and runs Test-Long (a tick every 100 ms); the relay holding the session is killed with SIGKILL. The page reconnects
// through nginx, a surviving relay takes the session over with the protocol's Connect, and the ticks go on in the same
// console entry, after a warning that says what the dead relay may have lost: never a silent gap.
//
//   eval "$(bash scripts/postgres.sh)"; scripts/build-frontend.sh && cargo build -p psgate-relay && source scripts/env.sh
//   cd tests/e2e && npm ci && node --test failover.test.mjs
//
// Needs nginx (scripts/setup.sh --test) and PSGATE_TEST_POSTGRES (scripts/postgres.sh; scripts/test.sh sets both up).
// Screenshots go to tests/e2e/artifacts/failover-*.png.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { chromium } from 'playwright-core';

import { artifacts, bin, browserPath, CHROMIUM_ARGS, POSTGRES, psql, repo, requireBuilt, startSiteRelay as startRelay, startWinrmPeer, stopServer, TIMEOUT, watch } from './harness.mjs';

const WINRM_USER = 'PSGATE\\ada';
const WINRM_PASSWORD = 'Secret-1';
const SLOW = 45_000;

/** A free loopback port. */
function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** nginx running deploy/nginx.conf as shipped, its upstream pointed at `addrs`, on `port`. */
async function startNginx(dir, addrs, port) {
  const nginx = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p));
  assert.ok(nginx, 'nginx: scripts/setup.sh --test installs nginx-light');
  const shipped = readFileSync(path.join(repo, 'deploy/nginx.conf'), 'utf8');
  let servers = false;
  const conf = shipped
    .split('\n')
    .flatMap((line) => {
      const t = line.trimStart();
      if (t.startsWith('server 127.0.0.1:')) {
        if (servers) return [];
        servers = true;
        return addrs.map((a) => `    server ${a} max_fails=1 fail_timeout=10s;`);
      }
      return t === 'listen 80;' ? [`    listen 127.0.0.1:${port};`] : [line];
    })
    .join('\n');
  const d = path.join(dir, 'nginx');
  for (const t of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(path.join(d, t), { recursive: true });
  writeFileSync(path.join(d, 'psgate.conf'), conf);
  writeFileSync(
    path.join(d, 'nginx.conf'),
    `worker_processes 1;\npid ${d}/nginx.pid;\nerror_log ${d}/error.log;\nevents { worker_connections 256; }\nhttp {\n  access_log off;\n` +
      ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${d}/${t === 'client_body' ? 'body' : t};\n`).join('') +
      `  include ${d}/psgate.conf;\n}\n`,
  );
  for (const p of [dir, d, path.join(d, 'body'), path.join(d, 'proxy')]) chmodSync(p, 0o777);
  const server = spawn(nginx, ['-p', d, '-c', path.join(d, 'nginx.conf'), '-g', 'daemon off;'], { stdio: 'ignore' });
  const end = Date.now() + TIMEOUT;
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) return server;
    } catch {
      // not yet
    }
    if (Date.now() > end) throw new Error(`nginx did not answer: ${readFileSync(path.join(d, 'error.log'), 'utf8')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('failover', { skip: !POSTGRES && 'PSGATE_TEST_POSTGRES is not set (eval "$(bash scripts/postgres.sh)")' }, () => {
  let dir;
  let peer;
  let nginx;
  let url;
  const relays = [];
  const db = `psgate_e2e_failover_${process.pid}`;
  let browser;
  let page;
  const problems = [];
  const shot = (name) => page.screenshot({ path: path.join(artifacts, name), fullPage: true });

  before(async () => {
    requireBuilt({ needPython: true });
    dir = mkdtempSync(path.join(tmpdir(), 'psgate-e2e-failover-'));
    psql(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    psql(`CREATE DATABASE ${db}`);
    const database = `${POSTGRES.replace(/\/[^/]*$/, '')}/${db}`;
    peer = await startWinrmPeer(['--user', `${WINRM_USER}:${WINRM_PASSWORD}`, '--auth', 'ntlm']);
    const allow = `[[allow]]\nhosts = ["127.0.0.1"]\nports = [${peer.port}]\ntransports = ["winrm"]\n`;
    for (const id of ['relay-1', 'relay-2', 'relay-3']) relays.push(await startRelay(dir, id, database, allow));
    const add = spawnSync(bin, ['user', 'add', 'e2e', '--config', relays[0].file], { input: 'e2e-failover-pw\n', encoding: 'utf8' });
    assert.equal(add.status, 0, add.stderr);
    const port = await freePort();
    nginx = await startNginx(dir, relays.map((r) => r.addr), port);
    url = `http://127.0.0.1:${port}/`;
    browser = await chromium.launch({ executablePath: browserPath, headless: true, args: CHROMIUM_ARGS });
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    // The killed relay's dropped WebSocket and the refused reconnects are the point of this test.
    watch(page, problems, (reqUrl, status) => /\/api\/ws$/.test(reqUrl) || status === 502);
    await page.goto(url);
    await page.locator('#login-name').fill('e2e');
    await page.locator('#login-password').fill('e2e-failover-pw');
    await page.click('#login-submit');
    await page.locator('.topbar .link.open').waitFor();
  });

  after(async () => {
    await browser?.close();
    for (const r of relays) await stopServer(r.server);
    if (nginx && nginx.exitCode === null) nginx.kill('SIGTERM');
    if (peer) await stopServer(peer.peer);
    if (dir) rmSync(dir, { recursive: true, force: true });
    try {
      psql(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    } catch {
      // the server may be gone
    }
  });

  test('the relay holding a WinRM session is killed: the output goes on from another relay, the gap said', async () => {
    await page.locator('#new-transport').selectOption('winrm');
    await page.locator('#new-computers').fill('127.0.0.1');
    await page.locator('#new-port').fill(String(peer.port));
    await page.locator('#new-authentication').selectOption('ntlm');
    await page.locator('#new-user').fill(WINRM_USER);
    await page.locator('#new-password').fill(WINRM_PASSWORD);
    await page.click('#new-session');
    const row = page.locator('#sessions tr.session-row').first();
    await row.locator('td.state-opened').waitFor({ timeout: SLOW });
    await row.click();
    const entries = page.locator('.session-console .console-entry');
    const before = await entries.count();
    await page.locator('#console-input').fill('Test-Long -Seconds 25');
    await page.locator('#console-input').press('Enter');
    const entry = entries.nth(before);
    const ticks = async () =>
      (await entry.locator('pre.message').allTextContents())
        .flatMap((t) => t.split('\n'))
        .map((t) => t.match(/^tick (\d+)$/))
        .filter(Boolean)
        .map((m) => Number(m[1]));
    const waitFor = async (what, ok, timeout = SLOW) => {
      const end = Date.now() + timeout;
      while (!ok(await ticks())) {
        if (Date.now() > end) throw new Error(`${what} within ${timeout} ms; seen: ${(await ticks()).join(' ')}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await waitFor('ten ticks', (t) => t.length >= 10);

    const holder = psql('SELECT relay FROM winrm_sessions', db);
    const victim = relays.find((r) => r.id === holder);
    assert.ok(victim, `the holder ${holder} is one of the relays`);
    const seen = (await ticks()).at(-1);
    victim.server.kill('SIGKILL');
    const killed = Date.now();
    await shot('failover-killed.png');

    // The page reconnects through nginx; another relay has taken the session over and re-attached Test-Long: its
    // ticks go on in the same entry.
    await entry.getByText(`Relay ${holder} stopped`).waitFor({ timeout: 30_000 });
    const back = Date.now() - killed;
    const shown = (await ticks()).at(-1);
    await waitFor('ticks after the takeover', (t) => t.at(-1) > shown + 5, 30_000);
    assert.match(await entry.textContent(), /output it had received and not yet delivered is lost/);
    const all = await ticks();
    assert.deepEqual(all, [...all].sort((a, b) => a - b), 'in order, none repeated');
    assert.equal(new Set(all).size, all.length, 'none repeated');
    const after = all.filter((t) => t > seen);
    assert.deepEqual(after, after.map((_, i) => after[0] + i), 'contiguous after the takeover');
    // The page's re-attach of the pipeline the dead relay ran (gone with it) is nothing to tell the user about.
    assert.equal(await page.getByText(/has no pipeline/).count(), 0);
    // The session is listed, under its id, as opened on its new relay.
    await row.locator('td.state-opened').waitFor();
    await shot('failover-after.png');
    console.log(`# output again ${back} ms after the SIGKILL of ${holder} (seen through the page)`);
    assert.deepEqual(problems.filter((p) => !/WebSocket|\/api\/ws|ERR_CONNECTION|status of 502/.test(p)), []);
  });
});
