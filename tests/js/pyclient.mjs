// Runs tests/e2e/join_room.py: the Python LiveKit SDK joins a room with a
// token (optionally publishing audio) and reports `joined …`, `published`,
// `disconnected <reason>` on stdout.
import { spawn } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const python = process.env.NODO_PYTHON || join(here, '..', '..', '.venv', 'bin', 'python');
const script = join(here, '..', 'e2e', 'join_room.py');

export function joinRoom(url, token, { seconds = 30, publish = false } = {}) {
  const p = spawn(python, [script, url, token, String(seconds), ...(publish ? ['publish'] : [])]);
  const lines = [];
  p.stdout.on('data', (b) => lines.push(...b.toString().split('\n').filter(Boolean)));
  const exited = new Promise((r) => p.on('exit', r));
  const waitFor = async (prefix, timeout = 20000) => {
    const deadline = Date.now() + timeout;
    while (Date.now() < deadline) {
      const l = lines.find((x) => x.startsWith(prefix));
      if (l) return l;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`python never printed ${prefix}: ${lines.join(' | ')}`);
  };
  return { waitFor, lines, exited, kill: () => p.kill() };
}
