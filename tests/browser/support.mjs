// Helpers the browser test files that start their own node share.
import { spawn } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';

/** A free loopback port. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Whether something accepts TCP connections on the loopback `port`. */
export function accepts(port) {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.on('connect', () => { socket.destroy(); resolve(true); });
    socket.on('error', () => resolve(false));
  });
}

// A standalone node: none of the demo's STREAMR_* settings (its coordinator above all) may
// reach it through the environment.
const standaloneEnv = Object.fromEntries(
  Object.entries(process.env).filter(([name]) => !name.startsWith('STREAMR_')),
);

/** Child processes (a node, publishers) started outside the demo and stopped together. */
export class Processes {
  #children = [];
  #stopping = false;

  /** Starts `command`; its stderr's tail is printed if it exits with an error before `stop`. */
  start(command, args, name) {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], env: standaloneEnv });
    let log = '';
    child.stderr.on('data', (chunk) => { log = (log + chunk).slice(-4000); });
    child.on('exit', (code) => {
      if (code && !this.#stopping) console.error(`${name} exited ${code}:\n${log}`);
    });
    this.#children.push(child);
    return child;
  }

  /** Ends every process started (SIGTERM). */
  stop() {
    this.#stopping = true;
    for (const child of this.#children) child.kill('SIGTERM');
  }
}

/**
 * Starts a standalone streamr-node (`bin`) under `processes` on free loopback ports, its
 * identity in `dir`, with `extra` arguments, and waits until its RTMP port accepts (up to
 * 10 s). Resolves to its ports, `{ rtmp, http }`.
 */
export async function startNode(processes, bin, dir, extra = []) {
  const [rtmp, http] = [await freePort(), await freePort()];
  processes.start(bin, ['--rtmp-listen', `127.0.0.1:${rtmp}`, '--http-listen', `127.0.0.1:${http}`,
    '--identity', join(dir, 'identity.key'), ...extra], 'streamr-node');
  const deadline = Date.now() + 10_000;
  while (!(await accepts(rtmp))) {
    if (Date.now() >= deadline) throw new Error('streamr-node did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
  return { rtmp, http };
}
