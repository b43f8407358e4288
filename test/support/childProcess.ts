/**
 * Helpers to run TypeScript child processes (via `node --import tsx`) that talk to the parent over
 * IPC, and to kill them with SIGKILL. Used by the kill -9 suites and the directory-lock test.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface TsChild {
  readonly child: ChildProcess;
  /** Every IPC message received so far, in order. */
  readonly messages: unknown[];
  /** Resolves with the first message (already received or future) satisfying `match`. */
  waitFor<T = unknown>(match: (msg: unknown) => boolean, timeoutMs?: number): Promise<T>;
  /**
   * Resolves when the process has exited (with its code / signal) AND its IPC channel is closed, so
   * every message it sent has been delivered ('close', not 'exit').
   */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL, then wait for the exit. */
  kill9(): Promise<void>;
}

/** Children not yet exited: SIGKILLed when this process exits, so a failing test never leaks one. */
const liveChildren = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

/** SIGKILLs every child spawned here that is still running (e.g. in an `after` hook). */
export function killAllChildren(): void {
  for (const child of liveChildren) child.kill('SIGKILL');
}

/** Absolute path of a module next to `importMetaUrl` (e.g. a child script in test/support). */
export function siblingPath(importMetaUrl: string, relative: string): string {
  return fileURLToPath(new URL(relative, importMetaUrl));
}

const bundles = new Map<string, string>();

/**
 * Bundles a TypeScript child script into one .mjs file (once per process) with esbuild, which tsx
 * itself depends on. A bundled child starts in ~50 ms instead of ~300 ms under `--import tsx`, which
 * is what makes hundreds of kill -9 cycles affordable. npm packages stay external, imported by
 * absolute path (native addons cannot be bundled). Falls back to tsx if esbuild is unavailable.
 */
export async function bundleTsChild(script: string): Promise<{ command: string[] }> {
  const cached = bundles.get(script);
  if (cached) return { command: [cached] };
  const repoRequire = createRequire(script);
  let esbuild: typeof import('esbuild');
  try {
    esbuild = await import(repoRequire.resolve('esbuild'));
  } catch {
    return { command: ['--import', 'tsx', script] };
  }
  const bundleDir = mkdtempSync(join(tmpdir(), 'cairn-child-'));
  process.on('exit', () => rmSync(bundleDir, { recursive: true, force: true }));
  const outfile = join(bundleDir, 'child.mjs');
  await esbuild.build({
    entryPoints: [script],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'error',
    plugins: [
      {
        name: 'external-packages-by-absolute-path',
        setup(build) {
          build.onResolve({ filter: /^[^./]/ }, (a) => {
            if (a.path.startsWith('node:')) return { path: a.path, external: true };
            return { path: repoRequire.resolve(a.path), external: true };
          });
        },
      },
    ],
  });
  bundles.set(script, outfile);
  return { command: [outfile] };
}

/** Spawns `node --import tsx <script> ...args` with an IPC channel; stderr is passed through. */
export function spawnTsChild(
  script: string,
  args: readonly string[] = [],
  env: NodeJS.ProcessEnv = {},
): TsChild {
  return spawnNodeChild(['--import', 'tsx', script], args, env, script);
}

/** Spawns `node <command...> ...args` (e.g. a `bundleTsChild` result) with an IPC channel. */
export function spawnNodeChild(
  command: readonly string[],
  args: readonly string[] = [],
  env: NodeJS.ProcessEnv = {},
  script = command.join(' '),
): TsChild {
  const child = spawn(process.execPath, [...command, ...args], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    env: { ...process.env, ...env },
  });
  liveChildren.add(child);
  child.on('exit', () => liveChildren.delete(child));
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
    child.on('close', (code, signal) => resolve({ code, signal }));
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
