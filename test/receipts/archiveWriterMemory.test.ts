// The archive writer in bounded memory: a window whose rows outgrow the writer's DuckDB memory limit
// is archived (sorted in key ranges, sortedCopy.ts) into the same files a single sort writes; what
// cannot be done within the configured memory and spill cap is a typed RESOURCE_EXHAUSTED error that
// names the settings, and a reopen with higher limits archives the window from the WAL. Before the
// fix, `COPY … ORDER BY` of a window larger than the memory limit failed with DuckDB's "Out of
// Memory" (its sort does not spill its payload), the store latched an IO_FATAL and every reopen
// failed the same way. Real DuckDB, real files.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { DuckDBInstance } from '@duckdb/node-api';
import { isCairnError } from '../../src/lib/errors.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { encodeBlockEntry, normalizeBlock } from '../../src/receipts/codec.ts';
import { DuckDbArchive } from '../../src/receipts/duckdbArchive.ts';
import { ParquetWindowWriter, type ParquetWriterOptions } from '../../src/receipts/parquetWindowWriter.ts';
import { ReceiptStore } from '../../src/receipts/receiptStore.ts';
import { copySorted } from '../../src/receipts/sortedCopy.ts';
import { heavyBlock, makeBlock, txHash } from './support/fixtures.ts';
import { withTempDir } from './support/harness.ts';

/**
 * Rows of two Parquet files compared in file order (through a separate DuckDB instance): the row
 * counts and the first position where they differ (-1: none).
 */
async function compareFiles(a: string, b: string): Promise<{ rows: [number, number]; firstDiff: number }> {
  const instance = await DuckDBInstance.create(':memory:', { threads: '1' });
  const c = await instance.connect();
  const rowsOf = (f: string) =>
    `SELECT file_row_number AS n, hash(COLUMNS(* EXCLUDE (file_row_number))) AS h FROM read_parquet('${f}', file_row_number = true)`;
  try {
    const [row] = (
      await c.runAndReadAll(
        `SELECT (SELECT count(*) FROM read_parquet('${a}')), (SELECT count(*) FROM read_parquet('${b}')), ` +
          `coalesce(min(n), -1) FROM (${rowsOf(a)}) x FULL JOIN (${rowsOf(b)}) y USING (n) WHERE x.h IS DISTINCT FROM y.h`,
      )
    ).getRows();
    return { rows: [Number(row![0]), Number(row![1])], firstDiff: Number(row![2]) };
  } finally {
    c.closeSync();
    instance.closeSync();
  }
}

async function writeWith(
  options: ParquetWriterOptions,
  entries: readonly Uint8Array[],
  receiptsPath: string,
  logsPath: string,
): Promise<{ receiptRows: number; logRows: number; slices: { receipts: number; logs: number } }> {
  const w = await ParquetWindowWriter.open(options);
  try {
    const rows = await w.write(0, entries.length - 1, entries, receiptsPath, logsPath);
    return { ...rows, slices: { ...w.lastSlices } };
  } finally {
    w.close();
  }
}

async function assertSameFiles(a: [string, string], b: [string, string]): Promise<void> {
  for (let i = 0; i < 2; i++) {
    const { rows, firstDiff } = await compareFiles(a[i]!, b[i]!);
    assert.ok(rows[0] > 0 && rows[0] === rows[1], `${a[i]} and ${b[i]} row counts ${rows}`);
    assert.equal(firstDiff, -1, `${a[i]} and ${b[i]} differ first at row ${firstDiff}`);
  }
}

test('a window larger than the writer memory limit is archived, rows as one sort orders them', {
  timeout: 120_000,
}, async () => {
  const seed = seedFromEnv();
  console.log(`archiveWriterMemory seed ${seed} (replay with CAIRN_SEED=${seed})`);
  const rng = new Rng(seed);
  // ~31 MB of receipts (80,000 log rows of ~400 bytes) against a 24 MB limit: failed before the fix.
  const entries = Array.from(
    { length: 500 },
    (_, n) => encodeBlockEntry(normalizeBlock(heavyBlock(rng, n))).payload,
  );
  await withTempDir(async (dir) => {
    for (const threads of [1, 2]) {
      const small = await writeWith(
        {
          threads,
          memoryLimit: '24MB',
          spillDirectory: join(dir, `spill${threads}`),
          rowGroupRows: 10_240,
          logOrder: 'address',
        },
        entries,
        join(dir, `r${threads}`),
        join(dir, `l${threads}`),
      );
      assert.deepEqual([small.receiptRows, small.logRows], [20_000, 80_000]);
      assert.ok(small.slices.logs > 1, `the logs were sorted in slices (${small.slices.logs})`);
    }
    const whole = await writeWith(
      { threads: 1, memoryLimit: '1GB', rowGroupRows: 10_240, logOrder: 'address' },
      entries,
      join(dir, 'r'),
      join(dir, 'l'),
    );
    assert.deepEqual(whole.slices, { receipts: 1, logs: 1 }, 'one sort at 1 GB');
    await assertSameFiles([join(dir, 'r1'), join(dir, 'l1')], [join(dir, 'r'), join(dir, 'l')]);
    await assertSameFiles([join(dir, 'r2'), join(dir, 'l2')], [join(dir, 'r'), join(dir, 'l')]);
  });
});

test('slice boundaries inside one address and one block keep the order (both log orders)', async () => {
  // Six addresses only (fixtures.ts), so most slices start inside an address's run of rows, and
  // slices of ~20 KB so that some start inside a block.
  const entries = Array.from(
    { length: 300 },
    (_, n) => encodeBlockEntry(normalizeBlock(makeBlock(17, n, { maxReceipts: 12 }))).payload,
  );
  await withTempDir(async (dir) => {
    for (const logOrder of ['address', 'block'] as const) {
      const base = { threads: 1, memoryLimit: '256MB', rowGroupRows: 2_048, logOrder };
      const sliced = await writeWith(
        { ...base, sortSliceBytes: 20_000 },
        entries,
        join(dir, `rs-${logOrder}`),
        join(dir, `ls-${logOrder}`),
      );
      const whole = await writeWith(base, entries, join(dir, `r-${logOrder}`), join(dir, `l-${logOrder}`));
      assert.ok(sliced.slices.logs > 20 && sliced.slices.receipts > 5, JSON.stringify(sliced.slices));
      assert.deepEqual(whole.slices, { receipts: 1, logs: 1 });
      assert.deepEqual([sliced.receiptRows, sliced.logRows], [whole.receiptRows, whole.logRows]);
      await assertSameFiles(
        [join(dir, `rs-${logOrder}`), join(dir, `ls-${logOrder}`)],
        [join(dir, `r-${logOrder}`), join(dir, `l-${logOrder}`)],
      );
    }
  });
});

test('a store whose windows outgrow its DuckDB memory limit archives them; reads come back from the files', {
  timeout: 120_000,
}, async () => {
  const rng = new Rng(seedFromEnv());
  const blocks = Array.from({ length: 401 }, (_, n) => heavyBlock(rng, n));
  await withTempDir(async (dir) => {
    const options = {
      dir,
      blocksPerFile: 400,
      hotRetentionBlocks: 1,
      duckdb: { memoryLimit: '24MB', threads: 1 },
    };
    const store = await ReceiptStore.open(options);
    for (const b of blocks) await store.putBlock(b);
    await store.waitForArchive();
    assert.equal(store.ranges().archivedThrough, 399);
    await store.close();
    const again = await ReceiptStore.open(options);
    try {
      assert.ok(again.ranges().hotFloor > 0, 'the archive answers the early blocks');
      for (const n of [0, 199, 399]) {
        const r = await again.getReceipt(txHash(n, 7));
        assert.equal(r?.blockNumber, n);
        const address = blocks[n]!.receipts[7]!.logs[2]!.address;
        const logs = await again.getLogs({ fromBlock: n, toBlock: n, addresses: [address] });
        assert.deepEqual(
          logs.map((l) => [l.blockNumber, l.logIndex]),
          [[n, 7 * 4 + 2]],
        );
      }
    } finally {
      await again.close();
    }
  });
});

test('out of memory and spill space is RESOURCE_EXHAUSTED naming the limits; higher limits at reopen archive the window', {
  timeout: 120_000,
}, async () => {
  const rng = new Rng(seedFromEnv());
  const blocks = Array.from({ length: 201 }, (_, n) => heavyBlock(rng, n));
  await withTempDir(async (dir) => {
    // The stage alone (~12 MB) outgrows 8 MB of memory, and 1 MB of spill cannot take the rest.
    const tight = {
      dir,
      blocksPerFile: 200,
      duckdb: { memoryLimit: '8MB', maxSpillSize: '1MB', threads: 1 },
    };
    const store = await ReceiptStore.open(tight);
    let failure: unknown;
    try {
      for (const b of blocks) await store.putBlock(b);
      await store.waitForArchive();
    } catch (err) {
      failure = err;
    }
    await store.close().catch(() => undefined);
    assert.ok(isCairnError(failure, 'RESOURCE_EXHAUSTED'), `got ${String(failure)}`);
    assert.match((failure as Error).message, /memoryLimit 8MB, maxSpillSize 1MB/);
    assert.deepEqual((failure as unknown as { details: { first: number } }).details.first, 0);

    // Same limits: the open archives the due window, and fails the same typed way.
    await assert.rejects(ReceiptStore.open(tight), (err) => isCairnError(err, 'RESOURCE_EXHAUSTED'));
    // Higher limits: the window is archived from the WAL, every acknowledged block is there.
    const roomy = await ReceiptStore.open({ ...tight, duckdb: { memoryLimit: '64MB', threads: 1 } });
    try {
      assert.ok(roomy.ranges().latest >= 199);
      assert.equal(roomy.ranges().archivedThrough, 199);
      for (let n = 0; n <= roomy.ranges().latest; n += 37) {
        assert.equal((await roomy.getReceipt(txHash(n, 0)))?.blockNumber, n);
      }
    } finally {
      await roomy.close();
    }
  });
});

test('a query past the spill cap is LIMIT_EXCEEDED and the store stays usable', {
  timeout: 120_000,
}, async () => {
  const rng = new Rng(seedFromEnv());
  const blocks = Array.from({ length: 301 }, (_, n) => heavyBlock(rng, n));
  await withTempDir(async (dir) => {
    const options = {
      dir,
      blocksPerFile: 300,
      hotRetentionBlocks: 1,
      maxResults: 1_000_000,
      maxResultBytes: 1 << 30,
    };
    const writer = await ReceiptStore.open(options);
    for (const b of blocks) await writer.putBlock(b);
    await writer.waitForArchive();
    await writer.close();
    const store = await ReceiptStore.open({
      ...options,
      duckdb: { memoryLimit: '16MB', maxSpillSize: '1MB', threads: 1 },
    });
    try {
      // Every log of the window (48,000 rows, ~19 MB) sorted by (block, log index): more than 16 MB.
      await assert.rejects(
        store.getArchivedLogs({ fromBlock: 0, toBlock: 299 }),
        (err) => isCairnError(err, 'LIMIT_EXCEEDED') && /maxSpillSize/.test((err as Error).message),
      );
      const address = blocks[5]!.receipts[3]!.logs[1]!.address;
      const one = await store.getArchivedLogs({ fromBlock: 0, toBlock: 299, addresses: [address] });
      assert.deepEqual(
        one.map((l) => [l.blockNumber, l.logIndex]),
        [[5, 13]],
      );
      await store.putBlock(heavyBlock(rng, 301));
      assert.equal(store.ranges().latest, 301);
    } finally {
      await store.close();
    }
  });
});

test('both DuckDB instances run with the configured spill cap', async () => {
  await withTempDir(async (dir) => {
    const archive = await DuckDbArchive.open({ spillDirectory: dir, maxSpillSize: '3MB' });
    try {
      const query = (await (archive as unknown as { start(): Promise<{ instance: DuckDBInstance }> }).start())
        .instance;
      const c = await query.connect();
      const cap = (await c.runAndReadAll("SELECT current_setting('max_temp_directory_size')")).getRows();
      c.closeSync();
      assert.equal(String(cap[0]![0]), '2.8 MiB');
    } finally {
      await archive.close();
    }
  });
});

test('an unstaged window goes to the writer thread in pieces read from the WAL one at a time, in order with stagings', {
  timeout: 60_000,
}, async () => {
  const rng = new Rng(seedFromEnv());
  // ~24 MB of entries: three pieces of at most ~8 MB (SEND_PIECE_BYTES) and a block.
  const entries = Array.from(
    { length: 400 },
    (_, n) => encodeBlockEntry(normalizeBlock(heavyBlock(rng, n))).payload,
  );
  const blockBytes = entries[0]!.length;
  await withTempDir(async (dir) => {
    const archive = await DuckDbArchive.open({ spillDirectory: dir, threads: 1 });
    try {
      const asked: [number, number, number][] = [];
      const fromWal = (from: number, to: number): Uint8Array[] => {
        const piece = entries.slice(from, to + 1);
        asked.push([from, to, piece.reduce((s, e) => s + e.length, 0)]);
        return piece;
      };
      const first = archive.writeWindowEntries(0, 299, fromWal, join(dir, 'r0'), join(dir, 'l0'));
      // Acknowledged blocks staged while the window is being sent: they must reach the thread after
      // the window's pieces and write (else they would restart its stage midway).
      archive.stageEntries(300, entries.slice(300, 350));
      archive.stageEntries(350, entries.slice(350, 400));
      assert.deepEqual(await first, { receiptRows: 300 * 40, logRows: 300 * 160 });
      assert.equal(asked[0]![0], 0);
      assert.equal(asked.at(-1)![1], 299);
      for (let i = 1; i < asked.length; i++)
        assert.equal(asked[i]![0], asked[i - 1]![1] + 1, 'consecutive pieces');
      assert.ok(asked.length >= 3, `pieces asked: ${JSON.stringify(asked)}`);
      for (const [from, to, bytes] of asked) {
        assert.ok(bytes <= (8 << 20) + blockBytes, `piece ${from}..${to} holds ${bytes} bytes`);
      }
      const count = asked.length;
      const second = await archive.writeWindowEntries(300, 399, fromWal, join(dir, 'r1'), join(dir, 'l1'));
      assert.equal(asked.length, count, 'the blocks staged meanwhile cover the next window');
      assert.equal(second.receiptRows, 100 * 40);
      for (const [k, from] of [0, 300].entries()) {
        const back = await archive.readBlocks(join(dir, `r${k}`), join(dir, `l${k}`));
        const want = entries.slice(from, k === 0 ? 300 : 400);
        assert.ok(
          back.length === want.length &&
            back.every((b, i) => Buffer.compare(encodeBlockEntry(b).payload, want[i]!) === 0),
          `window ${k} reads back as its entries`,
        );
      }
    } finally {
      await archive.close();
    }
  });
});

test('sorted copy from a key sample (every n-th row): slices cover every row once, in key order', async () => {
  await withTempDir(async (dir) => {
    const instance = await DuckDBInstance.create(':memory:', { threads: '1' });
    const c = await instance.connect();
    try {
      // 30,000 rows, a skewed BLOB key (a third of the rows share one value) and varying payloads.
      await c.run(
        "CREATE TEMP TABLE t AS SELECT CASE WHEN x % 3 = 0 THEN from_hex('aa') ELSE hash(x % 97)::VARCHAR::BLOB END AS k, " +
          "x AS n, repeat('p', (x * 7919) % 300)::BLOB AS payload FROM range(0, 30000) r(x) ORDER BY hash(x)",
      );
      const spec = {
        table: 't',
        columns: 'k BLOB, n UBIGINT, payload BLOB',
        where: 'n >= 5',
        key: [
          { name: 'k', type: 'BLOB' },
          { name: 'n', type: 'integer' },
        ] as const,
        rowBytesSql: '64 + octet_length(payload)',
        rows: 29_995,
        bytes: 29_995 * 214,
        copyOptions: 'FORMAT parquet',
      };
      const sliced = await copySorted(c, {
        ...spec,
        sliceBytes: 200_000,
        sampleRows: 1_000,
        path: join(dir, 'sliced.parquet'),
      });
      const whole = await copySorted(c, { ...spec, sliceBytes: 1 << 30, path: join(dir, 'whole.parquet') });
      assert.ok(sliced.slices > 20, `slices: ${sliced.slices}`);
      assert.deepEqual([sliced.rows, whole.rows, whole.slices], [29_995, 29_995, 1]);
      const { rows, firstDiff } = await compareFiles(join(dir, 'sliced.parquet'), join(dir, 'whole.parquet'));
      assert.deepEqual(rows, [29_995, 29_995]);
      assert.equal(firstDiff, -1, `the files differ first at row ${firstDiff}`);
    } finally {
      c.closeSync();
      instance.closeSync();
    }
  });
});
