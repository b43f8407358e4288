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
 * The encoding options of the archive files' `COPY … TO`, per kind of file (the writer adds
 * ROW_GROUP_SIZE and, for receipts files, KV_METADATA). Chosen by measurement on the 1M-log bench
 * dataset, its four 10k-block windows re-encoded from the same rows. Query: engine CPU p50 of the
 * bench's 50 archive-only 10k-block log queries relative to snappy V1, same-process A/B, 8 rounds;
 * COPY: one window (250,000 logs + 40,000 receipts) sorted and encoded on 2 threads, CPU p50 of 5.
 *   both files                  logs       receipts   log query  window COPY
 *   snappy, V1 (before)         147.7 MB   29.9 MB    1.00       823-844 ms
 *   snappy, V2                  145.3      26.0       0.94
 *   zstd level 1, V2            131.4      24.9       1.03-1.07  830-942
 *   zstd level 3, V2            129.4      24.8       ~1.03      1154
 *   lz4_raw, V2                 142.7      26.3       0.89-0.92  678
 *   logs lz4_raw V2 + receipts zstd level 1 V2 (chosen): 167.5 MB in all, 0.92, 785 ms.
 * A log query decompresses every column chunk of the row groups it touches (DuckDB writes one page
 * per chunk), so the logs files take the codec that decodes fastest; zstd would take another 12 MB
 * from them (the 12-byte zero padding of address-like topics, the zero-filled ABI words of `data`)
 * but adds ~6 % to every archive query, the bar with the least headroom. Receipts files are read
 * only by point reads beyond the hot window and by rebuilds: zstd level 1 (level 3 saves 0.1 MB
 * more at ~40 % more encoding CPU). PARQUET_VERSION V2 writes data pages v2 with
 * DELTA_BINARY_PACKED integers and DELTA_LENGTH_BYTE_ARRAY blobs (no 4-byte length before each
 * value): smaller and cheaper to decode. Readers need LZ4_RAW, zstd and v2 pages: DuckDB,
 * Arrow/pyarrow, polars, Spark 3.4+, Trino; hyparquet given the two decompressors
 * (test/receipts/interop.test.ts). WRITE_BLOOM_FILTER false: see the schema comment below.
 */
export const PARQUET_COPY_OPTIONS = {
  receipts:
    'FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, PARQUET_VERSION V2, WRITE_BLOOM_FILTER false',
  logs: 'FORMAT parquet, COMPRESSION lz4_raw, PARQUET_VERSION V2, WRITE_BLOOM_FILTER false',
} as const;

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
