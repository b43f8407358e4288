import { spawnSync } from 'node:child_process';

const RERUN_MARK = 'CAIRN_BENCH_THREADPOOL_SET';

/**
 * `npm run bench` runs `node --import tsx bench/run.ts`: the tsx loader starts the libuv pool
 * before `bench/run.ts` can set UV_THREADPOOL_SIZE, so the pool keeps its default 4 threads
 * (checked: with `--import tsx`, four reads blocked on FIFOs starve a `stat`; with the variable
 * set before Node starts they do not). Forty lanes would then fsync four at a time. This re-runs
 * the benchmark once in a child process whose environment sets the size before Node starts.
 * Returns true when the child ran (its output is this run's output; the caller returns at once).
 */
export function rerunWithThreadPool(threads: number): boolean {
  if (process.env[RERUN_MARK] === '1') return false;
  // --expose-gc: benchmarks collect the garbage of their own set-up before each timed run.
  const execArgv = process.execArgv.includes('--expose-gc')
    ? process.execArgv
    : [...process.execArgv, '--expose-gc'];
  const child = spawnSync(process.execPath, [...execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, UV_THREADPOOL_SIZE: String(threads), [RERUN_MARK]: '1' },
  });
  process.exitCode = child.status ?? 1;
  return true;
}
