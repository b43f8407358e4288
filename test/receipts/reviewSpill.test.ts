// Review of abcf2a6 (DuckDB spills into <dir>/duckdb-spill): the store runs two DuckDB instances
// (queries on this thread, window files on the archive writer thread) and both were given the same
// spill directory. DuckDB names its spill files by block size and a per-instance counter
// (duckdb_temp_storage_S192K-0.tmp, ...), so two instances in one directory open the same files and
// overwrite each other's spilled blocks: no error, the other instance later reads foreign bytes.
// Here the writer thread stages more acknowledged blocks than its memory limit holds (so part of the
// stage lives in spill files), a query on the other instance spills too, and the windows written
// from the stage must hold exactly the blocks staged. Before the fix they did not (or the writer
// failed reading its spill files): Parquet files with foreign bytes, checksummed after the fact.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { test } from 'node:test';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { encodeBlockEntry, normalizeBlock } from '../../src/receipts/codec.ts';
import { DuckDbArchive } from '../../src/receipts/duckdbArchive.ts';
import { ReceiptStore } from '../../src/receipts/receiptStore.ts';
import type { BlockReceiptsInput } from '../../src/receipts/types.ts';
import { heavyBlock, makeBlock } from './support/fixtures.ts';
import { withTempDir } from './support/harness.ts';

/** Blocks heavy enough (about 50 MB as staged) that staging and sorting them spills at 24 MB. */
function heavyBlocks(rng: Rng, count: number): BlockReceiptsInput[] {
  return Array.from({ length: count }, (_, n) => heavyBlock(rng, n));
}

/** The archive's query instance (private): the test parks a table in its spill files. */
type QueryInstance = {
  connect(): Promise<{ runAndReadAll(sql: string): Promise<{ getRows(): unknown[][] }> }>;
};
const queryInstanceOf = async (a: DuckDbArchive): Promise<QueryInstance> =>
  (await (a as unknown as { start(): Promise<{ instance: QueryInstance }> }).start()).instance;

function spillFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    if (!existsSync(d)) return;
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else out.push(join(d, e.name).slice(dir.length + 1));
    }
  };
  walk(dir);
  return out.sort();
}

test('windows written from a spilled stage are intact after a query spilled on the other instance', {
  timeout: 120_000,
}, async () => {
  const seed = seedFromEnv();
  console.log(`reviewSpill seed ${seed} (replay with CAIRN_SEED=${seed})`);
  await withTempDir(async (dir) => {
    const spill = join(dir, 'duckdb-spill');
    mkdirSync(spill); // as the store does at a writable open
    const archive = await DuckDbArchive.open({ spillDirectory: spill, memoryLimit: '24MB', threads: 1 });
    try {
      const blocks = heavyBlocks(new Rng(seed), 500).map((b) => normalizeBlock(b));
      const entries = blocks.map((b) => encodeBlockEntry(b).payload);
      const WINDOW = 50;
      const writeWindow = (first: number) =>
        archive.writeWindowEntries(
          first,
          first + WINDOW - 1,
          (from: number, to: number) => entries.slice(from, to + 1),
          join(dir, `r${first}`),
          join(dir, `l${first}`),
        );
      archive.stageEntries(0, entries);
      // Requests run in order on the thread: once the first window is written, all 500 are staged.
      await writeWindow(0);
      const stageSpill = spillFiles(spill);
      assert.ok(stageSpill.length > 0, 'the stage outgrew the memory limit (spill files exist)');

      // A query on the other instance that outgrows the same limit.
      const conn = await (await queryInstanceOf(archive)).connect();
      await conn.runAndReadAll(
        `CREATE TABLE parked AS SELECT x, hash(x + ${seed}) AS h, repeat('q', 24) AS s FROM range(0, 1500000) r(x)`,
      );
      const sumOf = async (): Promise<string> =>
        String((await conn.runAndReadAll('SELECT sum(h % 1000003), count(*) FROM parked')).getRows()[0]);
      const parked = await sumOf();
      console.log(
        `spill files: stage ${stageSpill.join(' ')}; after the query ${spillFiles(spill).join(' ')}`,
      );

      for (let first = WINDOW; first < blocks.length; first += WINDOW) await writeWindow(first);
      for (let first = 0; first < blocks.length; first += WINDOW) {
        const back = await archive.readBlocks(join(dir, `r${first}`), join(dir, `l${first}`));
        assert.ok(
          back.length === WINDOW &&
            back.every((b, i) => Buffer.compare(encodeBlockEntry(b).payload, entries[first + i]!) === 0),
          `window ${first}..${first + WINDOW - 1} reads back as staged`,
        );
      }
      assert.equal(await sumOf(), parked, "the query instance's spilled table reads back unchanged");
    } finally {
      await archive.close();
    }
  });
});

/** The temp_directory setting of a store's query instance (private: read through its reader). */
async function querySpillDirOf(store: ReceiptStore): Promise<string> {
  const engine = (store as unknown as { engine: DuckDbArchive }).engine;
  const withReader = (
    engine as unknown as {
      withReader<T>(
        fn: (c: { runAndReadAll(sql: string): Promise<{ getRows(): unknown[][] }> }) => Promise<T>,
      ): Promise<T>;
    }
  ).withReader.bind(engine);
  return String(
    await withReader(
      async (c) => (await c.runAndReadAll("SELECT current_setting('temp_directory')")).getRows()[0]![0],
    ),
  );
}

test('read-only opens spill into a private directory of their own (not .tmp under the working directory), removed at close', async () => {
  await withTempDir(async (dir) => {
    const writer = await ReceiptStore.open({ dir, blocksPerFile: 8 });
    await writer.putBlock(makeBlock(3, 0));
    await writer.close();
    const a = await ReceiptStore.open({ dir, blocksPerFile: 8, readOnly: true });
    const b = await ReceiptStore.open({ dir, blocksPerFile: 8, readOnly: true });
    let spillA: string;
    let spillB: string;
    try {
      spillA = await querySpillDirOf(a);
      spillB = await querySpillDirOf(b);
      console.log(`read-only spill directories: ${spillA} ${spillB}`);
      for (const s of [spillA, spillB]) {
        assert.ok(isAbsolute(s), `spill directory ${s} is relative to the working directory`);
        assert.ok(!s.startsWith(process.cwd()), `spill directory ${s} is under the working directory`);
        assert.ok(
          !s.startsWith(dir),
          `spill directory ${s} is inside the store (a read-only open writes nothing there)`,
        );
      }
      assert.notEqual(spillA, spillB, 'two read-only opens share a spill directory (same-named spill files)');
    } finally {
      await a.close();
      await b.close();
    }
    for (const s of [spillA, spillB])
      assert.equal(existsSync(dirname(s)), false, `${dirname(s)} left after close`);
  });
});
