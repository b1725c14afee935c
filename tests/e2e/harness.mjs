// What the end-to-end tests share: where things are, how Chromium runs here, and `psgate demo` started
// on a free port and stopped again.

import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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

