// Interoperability of the archive: an independent Parquet reader (hyparquet) reads the closed files
// and gets exactly the rows the hot tier serves; and the guard against DuckDB 1.5.6's bloom-filter
// bug (BLOB equality on a bloom-filtered column silently drops row groups, duckdb/duckdb#24994):
// no column chunk carries a bloom filter, and `col = x` agrees with `hex(col) = hex(x)`. The files
// are compressed with codecs hyparquet takes as decompressors it is given (PARQUET_COPY_OPTIONS:
// logs LZ4_RAW, receipts zstd): here support/lz4Raw.ts and fzstd (pure JavaScript, test-only), so
// the check stays independent of DuckDB.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DuckDBInstance } from '@duckdb/node-api';
import { decompress as zstdDecompress } from 'fzstd';
import { asyncBufferFromFile, type Compressors, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { DuckDbArchive } from '../../src/receipts/duckdbArchive.ts';
import { ReceiptStore } from '../../src/receipts/receiptStore.ts';
import type { Log } from '../../src/receipts/types.ts';
import { ADDRESSES, logKeys, makeBlock, TOPICS } from './support/fixtures.ts';
import { withTempDir } from './support/harness.ts';
import { lz4RawDecompress } from './support/lz4Raw.ts';

const u8 = (v: unknown): Uint8Array => {
  if (v instanceof Uint8Array) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  throw new Error(`expected bytes, got ${typeof v}`);
};

const compressors: Compressors = {
  ZSTD: (input, outputLength) => zstdDecompress(input, new Uint8Array(outputLength)),
  LZ4_RAW: lz4RawDecompress,
};

test('hyparquet reads the closed files and gets the same logs and receipts as the hot tier', async () => {
  await withTempDir(async (dir) => {
    const blocks = Array.from({ length: 40 }, (_, n) => makeBlock(21, n, { maxReceipts: 8 }));
    const store = await ReceiptStore.open({ dir, blocksPerFile: 16 });
    for (const b of blocks) await store.putBlock(b);
    await store.pruneBelow(0);
    const files = store.archiveFiles();
    assert.equal(files.length, 2);
    for (const f of files) {
      const rows = (await parquetReadObjects({
        file: await asyncBufferFromFile(f.logsPath),
        compressors,
        utf8: false,
      })) as Record<string, unknown>[];
      assert.equal(rows.length, f.entry.logRows);
      const fromFile: Log[] = rows
        .map((r) => ({
          address: u8(r.address),
          topics: [r.topic0, r.topic1, r.topic2, r.topic3]
            .filter((t) => t !== null && t !== undefined)
            .map(u8),
          data: u8(r.data),
          blockNumber: Number(r.block_number),
          blockHash: u8(r.block_hash),
          txHash: u8(r.tx_hash),
          txIndex: Number(r.tx_index),
          logIndex: Number(r.log_index),
          removed: false as const,
        }))
        .sort((a, b) => a.blockNumber - b.blockNumber || a.logIndex - b.logIndex);
      const hot = await store.getLogs({ fromBlock: f.entry.first, toBlock: f.entry.last });
      assert.deepEqual(logKeys(fromFile), logKeys(hot));

      const receipts = (await parquetReadObjects({
        file: await asyncBufferFromFile(f.receiptsPath),
        compressors,
        utf8: false,
      })) as Record<string, unknown>[];
      assert.equal(receipts.length, f.entry.receiptRows);
      for (const r of receipts) {
        const got = await store.getReceipt(u8(r.tx_hash));
        assert.ok(got);
        assert.equal(got.blockNumber, Number(r.block_number));
        assert.equal(got.txIndex, Number(r.tx_index));
        assert.equal(got.gasUsed, Number(r.gas_used));
        assert.equal(got.effectiveGasPrice, BigInt(r.effective_gas_price as bigint));
        assert.deepEqual(got.from, u8(r.from_address));
        assert.equal(got.logs.length, Number(r.log_count));
        assert.equal(got.logs[0]?.logIndex ?? Number(r.first_log_index), Number(r.first_log_index));
      }
    }
    await store.close();
  });
});

test('archive files carry no bloom filters and BLOB equality returns every row (DuckDB bloom-filter bug guard)', async () => {
  await withTempDir(async (dir) => {
    // Enough rows for several row groups, so a wrongly skipped row group would show.
    const blocks = Array.from({ length: 600 }, (_, n) => makeBlock(23, n, { maxReceipts: 10 }));
    const archive = await DuckDbArchive.open({ rowGroupRows: 2048 });
    const store = await ReceiptStore.open({ dir, blocksPerFile: 600, archive });
    for (const b of blocks) await store.putBlock(b);
    await store.pruneBelow(0);
    const [file] = store.archiveFiles();
    assert.ok(file && file.entry.logRows > 4096, `only ${file?.entry.logRows} rows`);
    for (const path of [file.logsPath, file.receiptsPath]) {
      const meta = await parquetMetadataAsync(await asyncBufferFromFile(path));
      if (path === file.logsPath) assert.ok(meta.row_groups.length >= 2, 'several row groups');
      for (const rg of meta.row_groups) {
        for (const c of rg.columns) {
          // The encoding DATA_FILES describes: logs LZ4_RAW, receipts zstd, data pages v2
          // (delta-length byte arrays).
          const expectedCodec: string = path === file.logsPath ? 'LZ4_RAW' : 'ZSTD';
          assert.equal(c.meta_data?.codec, expectedCodec, `${path}: ${c.meta_data?.path_in_schema} codec`);
          if (c.meta_data?.path_in_schema.join() === 'tx_hash') {
            assert.ok(c.meta_data.encodings.includes('DELTA_LENGTH_BYTE_ARRAY'), `${path}: tx_hash not v2`);
          }
          assert.equal(
            c.meta_data?.bloom_filter_offset,
            undefined,
            `${path}: ${c.meta_data?.path_in_schema} has a bloom filter`,
          );
        }
      }
    }
    const db = await DuckDBInstance.create(':memory:');
    const c = await db.connect();
    try {
      const count = async (where: string): Promise<number> =>
        Number(
          (
            await c.runAndReadAll(`SELECT count(*) FROM read_parquet('${file.logsPath}') WHERE ${where}`)
          ).getRows()[0]![0],
        );
      for (const a of ADDRESSES) {
        const hex = Buffer.from(a).toString('hex');
        const byEq = await count(`address = from_hex('${hex}')`);
        const byHex = await count(`lower(hex(address)) = '${hex}'`);
        assert.equal(byEq, byHex, `address ${hex}`);
        assert.ok(byHex > 0);
      }
      for (const t of TOPICS) {
        const hex = Buffer.from(t).toString('hex');
        assert.equal(
          await count(`topic0 = from_hex('${hex}')`),
          await count(`lower(hex(topic0)) = '${hex}'`),
        );
      }
      // The store's own archive query agrees with the hot tier for every address.
      for (const a of ADDRESSES) {
        const q = { fromBlock: 0, toBlock: 599, addresses: [a] };
        assert.deepEqual(logKeys(await store.getArchivedLogs(q)), logKeys(await store.getLogs(q)));
      }
    } finally {
      c.closeSync();
      db.closeSync();
      await store.close();
    }
  });
});
