// Lanes fsync on the libuv pool; enlarge it before anything starts the pool (see bin/cairn.js).
process.env.UV_THREADPOOL_SIZE ??= '64';

/**
 * Benchmark dispatcher: `npm run bench -- <name> [args...]` runs `bench/<name>.ts`, whose
 * exported `run(args)` prints a table and, as its last line, the JSON summary (DESIGN.md §5).
 * To add a benchmark, create `bench/<name>.ts` exporting `run` and add its name below.
 */
export type BenchRunner = (args: string[]) => Promise<void>;

const BENCHES: Record<string, () => Promise<{ run: BenchRunner }>> = {
  wal: () => import('./wal.ts'),
  consensus: () => import('./consensus.ts'),
  blocks: () => import('./blocks.ts'),
  laneLayouts: () => import('./laneLayouts.ts'),
  votePathTrace: () => import('./votePathTrace.ts'),
  receipts: () => import('./receipts.ts'),
  receiptStaging: () => import('./receiptStaging.ts'),
  state: () => import('./state.ts'),
};

async function main(): Promise<void> {
  const [name, ...args] = process.argv.slice(2);
  const load = name === undefined ? undefined : BENCHES[name];
  if (!load) {
    console.error(`usage: npm run bench -- <${Object.keys(BENCHES).join('|')}> [--quick]`);
    process.exitCode = 2;
    return;
  }
  const mod = await load();
  await mod.run(args);
}

await main();
