// What the end-to-end tests share: where things are, how Chromium runs here, and `psgate demo` started
// on a free port and stopped again.

import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

export const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, '../..');
export const bin = process.env.PSGATE_BIN ?? path.join(repo, 'target/debug/psgate');
export const dist = process.env.PSGATE_DIST ?? path.join(repo, 'dist');
export const browserPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const artifacts = path.join(here, 'artifacts');

// Headless, and off the network: no component updates, sync, QUIC probes or first-run pings.
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
export const TIMEOUT = 15_000;

/** Fails at once, naming what to build, when the relay or the console's build is missing (and, with `needPython`,
 * the test peers' Python); makes the screenshots' folder. */
export function requireBuilt({ needPython = false } = {}) {
  const needed = [['psgate binary (cargo build -p psgate-relay)', bin], ['Trunk build (scripts/build-frontend.sh)', path.join(dist, 'index.html')]];
  if (needPython) needed.push(['Python for the test peers ($PSGATE_PYTHON)', python]);
  for (const [what, p] of needed) {
    assert.ok(existsSync(p), `no ${what} at ${p}`);
  }
  mkdirSync(artifacts, { recursive: true });
}

/** A 401 that is expected: `/api/me` before the login, `/api/login` with a wrong password. */
export const expected401 = (url, status) => status === 401 && /\/api\/(me|login)$/.test(url);

/** Collects into `problems` what a page should never show: console errors, page errors, failed requests and HTTP
 * errors, except the expected 401s and what `ignore(url, status)` accepts. */
export function watch(page, problems, ignore = () => false) {
  page.on('console', (m) => m.type() === 'error' && !/status of 401/.test(m.text()) && !expected401(m.location().url, 401) && problems.push(`console: ${m.text()}`));
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
  page.on('response', (r) => r.status() >= 400 && !expected401(r.url(), r.status()) && !ignore(r.url(), r.status()) && problems.push(`HTTP ${r.status()}: ${r.url()}`));
}

/** Debian's headless Chromium with a profile of its own and its first page (default timeout [`TIMEOUT`]);
 * `close()` ends it and removes the profile. */
export async function launch(viewport = { width: 1400, height: 1000 }) {
  const profile = mkdtempSync(path.join(tmpdir(), 'psgate-e2e-chromium-'));
  const context = await chromium.launchPersistentContext(profile, { executablePath: browserPath, headless: true, args: CHROMIUM_ARGS, viewport });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(TIMEOUT);
  const close = async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, page, profile, close };
}

/** Types `script` at the console prompt and waits for its pipeline to end (or, with `until`, for that selector);
 * returns its entry. `scope` narrows the entries counted (a selector prefix), `timeout` the wait for the end. */
export async function runCommand(page, script, { until, scope = '', timeout } = {}) {
  const entries = page.locator(`${scope} .console-entry`.trim());
  const before = await entries.count();
  await page.locator('#console-input').fill(script);
  await page.locator('#console-input').press('Enter');
  const entry = entries.nth(before);
  await entry.waitFor();
  if (until) await page.locator(until).waitFor();
  else await page.locator('#console-input[placeholder=""]').waitFor(timeout ? { timeout } : undefined);
  return entry;
}

/** Starts `psgate demo` on a free port (with `args` after the others, e.g. `['--kiosk']`); resolves with the
 * process, its URL and the demo login once printed. */
export function startServer(args = []) {
  const server = spawn(bin, ['demo', '--port', '0', '--assets', dist, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  server.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`psgate did not start within ${TIMEOUT} ms:\n${stderr}`)), TIMEOUT);
    let out = '';
    server.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/psgate demo listening on (http:\/\/\S+)/);
      const login = out.match(/log in as: (\S+) \/ (\S+)/);
      if (m && login) {
        clearTimeout(timer);
        resolve({ server, url: m[1], user: login[1], password: login[2] });
      }
    });
    server.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    server.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`psgate exited with ${code} before listening:\n${stderr}`));
    });
  });
}

/** Stops the server the way Ctrl+C does (graceful shutdown), and kills it if it does not go. */
export function stopServer(server) {
  if (server.exitCode !== null || server.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => server.kill('SIGKILL'), 5_000);
    server.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    server.kill('SIGINT');
  });
}


/** The Python with psrpcore and pyspnego that runs the test peers (`$PSGATE_PYTHON`, as scripts/env.sh sets it). */
export const python = process.env.PSGATE_PYTHON ?? path.join(process.env.PSGATE_TOOLS ?? '/opt/psgate-tools', 'venv/bin/python');

/** Waits for a child's stdout to match `pattern` (within `ms`); resolves with the match. */
function readyLine(child, pattern, what, ms = TIMEOUT) {
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start within ${ms} ms:\n${stderr}`)), ms);
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(pattern);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code} before it was ready:\n${stderr}`));
    });
  });
}

/** Starts the WS-Management test peer (`tests/peers/winrm_host.py --port 0 …args`); resolves with the process and
 * its `http://127.0.0.1:PORT/wsman` URL and port. Stop it with `stopServer`. */
export async function startWinrmPeer(args = []) {
  const peer = spawn(python, [path.join(repo, 'tests/peers/winrm_host.py'), '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const m = await readyLine(peer, /winrm_host listening on (https?:\/\/[^\s/]+:(\d+)\/wsman)/, 'winrm_host.py', 30_000);
  return { peer, url: m[1], port: Number(m[2]) };
}

/** Starts `psgate serve` with a configuration of its own in `dir` (`config` is TOML appended after `listen`,
 * `database` and `assets`, e.g. `[[allow]]` rules) and one user made by `psgate user add`; resolves with the process,
 * its URL and the login. */
export async function startRelay(dir, config, { admin = false, others = [] } = {}) {
  const file = path.join(dir, 'psgate.toml');
  const toml = (p) => JSON.stringify(p); // a TOML basic string is a JSON string for these paths
  writeFileSync(file, `listen = "127.0.0.1:0"\ndatabase = ${toml(path.join(dir, 'psgate.db'))}\nassets = ${toml(dist)}\n${config}\n`);
  const password = `pw-${process.pid}-${Date.now()}`;
  // `e2e` (a relay admin if asked), and `others` with the same password.
  for (const [name, flags] of [['e2e', admin ? ['--admin'] : []], ...others.map((o) => [o, []])]) {
    const add = spawnSync(bin, ['user', 'add', name, ...flags, '--config', file], { input: `${password}\n`, encoding: 'utf8' });
    if (add.status !== 0) throw new Error(`psgate user add failed (${add.status}): ${add.stderr}`);
  }
  const server = spawn(bin, ['serve', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  const m = await readyLine(server, /psgate listening on (http:\/\/\S+?)\/?\s/, 'psgate serve');
  return { server, url: m[1], user: 'e2e', password };
}

/** The throwaway PostgreSQL server's URL (scripts/postgres.sh), for the tests of relays sharing a store. */
export const POSTGRES = process.env.PSGATE_TEST_POSTGRES;

/** `psql` against the test server's database `db` (or its default one): the output. */
export function psql(sql, db) {
  const url = db ? `${POSTGRES.replace(/\/[^/]*$/, '')}/${db}` : POSTGRES;
  return execFileSync('psql', ['-X', '-q', '-tA', url, '-c', sql], { encoding: 'utf8', env: { ...process.env, PGOPTIONS: '-c client_min_messages=warning' } }).trim();
}

/** `psgate serve` as relay `id` of a site on `database` (a `postgres://` URL; the seal key in `dir`, shared), with
 * `config` (TOML: `[[allow]]` rules, …) and a one-second heartbeat; resolves with the process, its configuration file,
 * its `host:port` and URL once it listens. */
export function startSiteRelay(dir, id, database, config) {
  const file = path.join(dir, `${id}.toml`);
  const toml = (p) => JSON.stringify(p);
  writeFileSync(
    file,
    `listen = "127.0.0.1:0"\ndatabase = ${toml(database)}\nseal_key_file = ${toml(path.join(dir, 'seal.key'))}\nassets = ${toml(dist)}\n${config}\n` +
      `[cluster]\nrelay_id = "${id}"\nheartbeat_secs = 1\ndead_after_secs = 5\n`,
  );
  const server = spawn(bin, ['serve', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  return readyLine(server, /psgate listening on http:\/\/(\S+?)\/?\s/, id).then((m) => ({ id, server, file, addr: m[1], url: `http://${m[1]}` }));
}
