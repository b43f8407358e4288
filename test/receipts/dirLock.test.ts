/**
 * The receipt store's directory lock (a second writer must be refused before it recovers, and so
 * cuts, a live WAL) and DuckDB's spill directory (inside the store, scratch removed at open).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { isCairnError } from '../../src/lib/errors.ts';
import { DuckDbArchive, SPILL_SUBDIRS } from '../../src/receipts/duckdbArchive.ts';
import { ReceiptStore, SPILL_DIR } from '../../src/receipts/receiptStore.ts';
import { makeBlock } from './support/fixtures.ts';
import { withTempDir } from './support/harness.ts';

const SEED = 7103;

function walBytes(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walDir = join(dir, 'wal');
  for (const name of readdirSync(walDir).sort())
    out.set(name, readFileSync(join(walDir, name)).toString('hex'));
  return out;
}

test('a second writable open of a live receipt store is LOCKED and touches nothing; the first keeps working', async () => {
  await withTempDir(async (dir) => {
    mkdirSync(dir, { recursive: true });
    const store = await ReceiptStore.open({ dir, blocksPerFile: 8 });
    try {
      for (let n = 0; n < 5; n++) await store.putBlock(makeBlock(SEED, n));
      const before = walBytes(dir);
      await assert.rejects(ReceiptStore.open({ dir, blocksPerFile: 8 }), (e) => isCairnError(e, 'LOCKED'));
      assert.deepEqual(walBytes(dir), before, 'the refused opener changed the WAL');
      // A read-only open takes no lock and writes nothing.
      const reader = await ReceiptStore.open({ dir, blocksPerFile: 8, readOnly: true });
      try {
        assert.equal(reader.ranges().latest, 4);
      } finally {
        await reader.close();
      }
      for (let n = 5; n < 10; n++) await store.putBlock(makeBlock(SEED, n));
    } finally {
      await store.close();
    }
    // Closed: the lock is released, and the next writer sees every acknowledged block.
    const again = await ReceiptStore.open({ dir, blocksPerFile: 8 });
    try {
      assert.equal(again.ranges().latest, 9);
    } finally {
      await again.close();
    }
  });
});

test('DuckDB spills inside the store: leftovers of a killed process are removed at a writable open', async () => {
  await withTempDir(async (dir) => {
    mkdirSync(join(dir, SPILL_DIR), { recursive: true });
    writeFileSync(join(dir, SPILL_DIR, 'duckdb_temp_storage-0.tmp'), 'left by a killed process');
    const store = await ReceiptStore.open({ dir, blocksPerFile: 8 });
    try {
      // (The open recreates the directory empty: the instances' subdirectories go inside it.)
      assert.deepEqual(readdirSync(join(dir, SPILL_DIR)), [], 'leftover spill files were not removed');
    } finally {
      await store.close();
    }
  });
});

test('DuckDbArchive passes spillDirectory to DuckDB (temp_directory), which spills there under its memory limit', async () => {
  await withTempDir(async (dir) => {
    mkdirSync(dir, { recursive: true });
    const spill = join(dir, 'spill');
    mkdirSync(spill); // the store creates it; DuckDB creates the instance's own level inside
    const archive = await DuckDbArchive.open({ spillDirectory: spill, memoryLimit: '32MB', threads: 1 });
    // The archive's reader connections are private; a test reads the engine's setting through them.
    const withReader = (
      archive as unknown as {
        withReader<T>(
          fn: (c: { runAndReadAll(sql: string): Promise<{ getRows(): unknown[][] }> }) => Promise<T>,
        ): Promise<T>;
      }
    ).withReader.bind(archive);
    try {
      const setting = await withReader(
        async (c) => (await c.runAndReadAll("SELECT current_setting('temp_directory')")).getRows()[0]![0],
      );
      assert.equal(
        setting,
        join(spill, SPILL_SUBDIRS.query),
        'the query instance spills in its own subdirectory',
      );
      // A sort of ~150 MB under a 32 MB limit has to spill.
      const spilled = await withReader(async (c) => {
        await c.runAndReadAll(
          'CREATE TEMP TABLE big AS SELECT range AS a, md5(range::VARCHAR) AS b FROM range(2000000)',
        );
        const rows = (await c.runAndReadAll('SELECT count(*) FROM (SELECT * FROM big ORDER BY b)')).getRows();
        return { rows, existed: existsSync(spill) };
      });
      assert.equal(Number(spilled.rows[0]![0]), 2_000_000);
      assert.ok(spilled.existed, 'DuckDB did not use the spill directory');
    } finally {
      await archive.close();
    }
  });
});
