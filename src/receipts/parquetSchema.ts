import { fromHex, toHex } from '../lib/bytes.ts';
import { CairnError } from '../lib/errors.ts';
import type { BlockEntry } from './types.ts';

/*
 * Parquet schema (every file written with WRITE_BLOOM_FILTER false: DuckDB 1.5.6 drops matching
 * row groups when a BLOB equality filter meets a bloom filter, duckdb/duckdb#24994).
 *   receipts: block_number UBIGINT, block_hash BLOB, tx_hash BLOB, tx_index UINTEGER,
 *             tx_type UTINYINT, status UTINYINT, from_address BLOB, to_address BLOB (NULL: creation),
 *             contract_address BLOB (NULL unless creation), gas_used UBIGINT,
 *             cumulative_gas_used UBIGINT, effective_gas_price UBIGINT, first_log_index UINTEGER,
 *             log_count UINTEGER                                   — rows in (block, tx index) order
 *   logs:     block_number UBIGINT, block_hash BLOB, tx_hash BLOB, tx_index UINTEGER,
 *             log_index UINTEGER, address BLOB, topic0..topic3 BLOB (NULL when absent), data BLOB
 *                                                                   — rows in (address, block, log index) order
 * Shared by the reader (duckdbArchive.ts, main thread) and the writer (parquetWindowWriter.ts, worker).
 */
/**
 * The encoding options of every archive file's `COPY … TO` (the writer adds ROW_GROUP_SIZE and, for
 * receipts files, KV_METADATA). Chosen by measurement (1M-log bench dataset, the four 10k-block
 * windows re-encoded from the same rows; query: CPU p50 of the bench's 50 archive-only 10k-block
 * queries relative to snappy V1, same-process A/B; COPY: one window, 250,000 logs + its receipts,
 * sort and encode on 2 threads, p50 of 5):
 *   snappy, V1 (before)     177.6 MB  query 1.00  window COPY (sort + encode) CPU  844 ms
 *   zstd level 3, V1        154.5 MB        1.06                                 1233 ms
 *   zstd level 1, V1        159.2 MB        1.08
 *   zstd level 3, V2        154.2 MB        1.03                                 1154 ms
 *   zstd level 1, V2        156.2 MB        1.03                                  942 ms   <- chosen
 *   snappy, V2              171.3 MB        0.93                                  664 ms
 *   lz4_raw, V2             169.0 MB
 * zstd takes the 12-byte zero padding of address-like topics and the zero-filled ABI words of `data`
 * that snappy leaves; level 1 keeps most of the gain at a small part of level 3's encoding CPU, and
 * decoding costs the same. PARQUET_VERSION V2 writes data pages v2 with DELTA_BINARY_PACKED integers
 * and DELTA_LENGTH_BYTE_ARRAY blobs (no 4-byte length before each value), smaller and cheaper to
 * decode. Readers: DuckDB, Arrow/pyarrow, Spark, Trino, and hyparquet with a zstd decompressor
 * (test/receipts/interop.test.ts). WRITE_BLOOM_FILTER false: see the schema comment below.
 */
export const PARQUET_COPY_OPTIONS =
  'FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, PARQUET_VERSION V2, WRITE_BLOOM_FILTER false';

export const RECEIPT_COLUMNS =
  'block_number UBIGINT, block_hash BLOB, tx_hash BLOB, tx_index UINTEGER, tx_type UTINYINT, status UTINYINT, ' +
  'from_address BLOB, to_address BLOB, contract_address BLOB, gas_used UBIGINT, cumulative_gas_used UBIGINT, ' +
  'effective_gas_price UBIGINT, first_log_index UINTEGER, log_count UINTEGER';
export const LOG_COLUMNS =
  'block_number UBIGINT, block_hash BLOB, tx_hash BLOB, tx_index UINTEGER, log_index UINTEGER, address BLOB, ' +
  'topic0 BLOB, topic1 BLOB, topic2 BLOB, topic3 BLOB, data BLOB';
export const LOG_SELECT =
  'block_number, block_hash, tx_hash, tx_index, log_index, address, topic0, topic1, topic2, topic3, data';

export function sqlString(path: string): string {
  return `'${path.replaceAll("'", "''")}'`;
}

/**
 * Parquet key-value metadata of a receipts file listing the window's blocks without receipts
 * ("<number>:<hash hex>" joined by commas): they have no rows, yet a rebuilt hot tier needs their
 * hashes to answer eth_getLogs by block hash.
 */
export const EMPTY_BLOCKS_KEY = 'cairn_empty_blocks';

export function encodeEmptyBlocks(
  blocks: readonly Pick<BlockEntry, 'number' | 'hash' | 'receipts'>[],
): string {
  return blocks
    .filter((b) => b.receipts.length === 0)
    .map((b) => `${b.number}:${toHex(b.hash)}`)
    .join(',');
}

export function decodeEmptyBlocks(text: string): BlockEntry[] {
  if (text === '') return [];
  return text.split(',').map((part) => {
    const m = /^(\d+):(?:0x)?([0-9a-f]{64})$/.exec(part);
    if (!m) throw new CairnError('CORRUPT', `archive metadata ${EMPTY_BLOCKS_KEY} has a bad entry "${part}"`);
    return { number: Number(m[1]), hash: fromHex(m[2]!), receipts: [] };
  });
}
