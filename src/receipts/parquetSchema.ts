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
