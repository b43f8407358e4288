/**
 * Helpers to run TypeScript child processes (via `node --import tsx`) that talk to the parent over
 * IPC, and to kill them with SIGKILL. Used by the kill -9 suites and the directory-lock test.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface TsChild {
  readonly child: ChildProcess;
  /** Every IPC message received so far, in order. */
  readonly messages: unknown[];
  /** Resolves with the first message (already received or future) satisfying `match`. */
  waitFor<T = unknown>(match: (msg: unknown) => boolean, timeoutMs?: number): Promise<T>;
  /** Resolves when the process has exited (with its code / signal). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL, then wait for the exit. */
  kill9(): Promise<void>;
}

/** Absolute path of a module next to `importMetaUrl` (e.g. a child script in test/support). */
export function siblingPath(importMetaUrl: string, relative: string): string {
  return fileURLToPath(new URL(relative, importMetaUrl));
}

/** Spawns `node --import tsx <script> ...args` with an IPC channel; stderr is passed through. */
export function spawnTsChild(
  script: string,
  args: readonly string[] = [],
  env: NodeJS.ProcessEnv = {},
): TsChild {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    env: { ...process.env, ...env },
  });
  const messages: unknown[] = [];
  const waiters: Array<{ match: (m: unknown) => boolean; resolve: (m: unknown) => void }> = [];
  child.on('message', (msg) => {
    messages.push(msg);
    for (let i = 0; i < waiters.length; i++) {
      const w = waiters[i]!;
      if (w.match(msg)) {
        waiters.splice(i--, 1);
        w.resolve(msg);
      }
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  const waitFor = <T>(match: (msg: unknown) => boolean, timeoutMs = 20_000): Promise<T> => {
    const already = messages.find(match);
    if (already !== undefined) return Promise.resolve(already as T);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`child ${script} sent no matching message within ${timeoutMs} ms`));
      }, timeoutMs);
      const onExit = exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(
          new Error(`child ${script} exited (code ${code}, signal ${signal}) before the expected message`),
        );
      });
      void onExit;
      waiters.push({
        match,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m as T);
        },
      });
    });
  };
  return {
    child,
    messages,
    waitFor,
    exited,
    kill9: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
