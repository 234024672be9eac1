import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/src/cli.js');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run the built CLI as a user would, with a clean environment plus `env`. */
export function runCli(args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  return waitFor(startCli(args, env));
}

const running = new Set<ChildProcess>();

export function startCli(args: string[], env: Record<string, string | undefined> = {}, wrapper: string[] = []): ChildProcess {
  const base: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', LOG_LEVEL: 'warn' };
  // `wrapper`: a command the CLI runs under, e.g. ['faketime', '-f', '-400d'] for a machine whose clock is wrong.
  const [cmd, ...pre] = [...wrapper, process.execPath];
  const child = spawn(cmd!, [...pre, CLI, ...args], { env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  child.on('exit', () => running.delete(child));
  return child;
}

/** A failed or timed-out test must not leave a shipper running into the next ones. */
export function killStrays(): void {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
}

export function waitFor(child: ChildProcess): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d) => {
    stdout += d;
  });
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}
