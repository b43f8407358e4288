import type { DuckDBAppender, DuckDBDataChunk, DuckDBVector } from '@duckdb/node-api';
import {
  decodeBlockEntry,
  type EntryRow,
  type EntryRowVisitor,
  newEntryRow,
  walkBlockEntry,
} from './codec.ts';
import { LOG_COLUMNS, RECEIPT_COLUMNS } from './parquetSchema.ts';
import type { BlockEntry } from './types.ts';

/** The DuckDB module (loaded lazily by the writer: see ParquetWindowWriter.open). */
export type DuckDbModule = typeof import('@duckdb/node-api');

/** Rows and estimated sort bytes of one staged block (see RECEIPT_ROW_BYTES, LOG_ROW_FIXED_BYTES). */
export interface StagedSize {
  receiptRows: number;
  receiptBytes: number;
  logRows: number;
  logBytes: number;
}

/**
 * Estimated bytes of a row as DuckDB sorts it: its fixed-width columns plus its BLOBs (a receipt:
 * three hashes/addresses of 20-32 bytes and up to two more; a log: two hashes, an address, up to
 * four topics, then its data). Used only to size sort slices, so an upper bound is good enough.
 */
export const RECEIPT_ROW_BYTES = 256;
export const LOG_ROW_FIXED_BYTES = 256;

/** What staging one block entry produced. */
export interface StagedBlock {
  number: number;
  /** The block's hash (a view into the entry). */
  hash: Uint8Array;
  receipts: number;
  size: StagedSize;
}

/** Appends the rows of block entries to the two stage tables through their appenders. */
export interface Stager {
  /** Appends one entry's rows (after checking its CRC and structure). */
  block(entry: Uint8Array): StagedBlock;
  /** Hands any rows still buffered to the appenders (before they are closed). */
  finish(): void;
}

/**
 * How blocks are staged in the writer's in-memory tables, and how the COPY turns the stage rows
 * back into the files' columns. Two layouts write the same files (same columns, rows, order, bytes):
 * - `chunks` (the default): entries are walked once (codec.ts walkBlockEntry) straight into DuckDB
 *   data chunks of 2,048 rows. Numeric columns are set in typed arrays, with no native call per
 *   value; each BLOB costs one native call when its chunk is flushed (profiled with
 *   bench/receiptStaging.ts: ~0.35 us each, plus the table append of its bytes, while the COPY
 *   spends ~0.2 us more per BLOB it cuts out of a larger one: 1.1 s of CPU instead of 0.8 s for a
 *   window's 1.6 million cuts), so a row's BLOBs are staged as few views into the entry and the
 *   COPY cuts them apart: a receipt's `head` (block hash, tx hash, ..., from, [to], [contract], as its
 *   body holds them), a log's `rec` (address, topic count, topics, data length, data) and its
 *   `hashes` (block hash, tx hash: 64 bytes at the start of its receipt's body). So a log row
 *   costs 2 native calls instead of 12 appender calls, a receipt 1 instead of 15, and no receipt
 *   or log objects are built.
 * - `rows`: the previous path, kept as the same-run baseline of bench/receiptStaging.ts and as the
 *   oracle of the layout tests: each entry decoded into receipt and log objects, then appended one
 *   value at a time (the stage tables have the files' columns).
 */
export type StageLayoutName = 'chunks' | 'rows';

/** A stage table (stage_receipts or stage_logs) and how the COPY reads the file's rows from it. */
export interface StageTable {
  /** Declared columns of the stage table. */
  columns: string;
  /** Select list giving the file's columns (RECEIPT_COLUMNS / LOG_COLUMNS, in order, by name). */
  select: string;
}

export interface StageLayout {
  receipts: StageTable;
  logs: StageTable;
  stager(duckdb: DuckDbModule, receipts: DuckDBAppender, logs: DuckDBAppender): Stager;
}

// ------------------------------------------------------------------ rows (the previous path)

export const ROW_LAYOUT: StageLayout = {
  receipts: { columns: RECEIPT_COLUMNS, select: '*' },
  logs: { columns: LOG_COLUMNS, select: '*' },
  stager: (_duckdb, ra, la) => ({
    block(entry) {
      // Views into the buffer this thread was given (the appender copies every value).
      const b = decodeBlockEntry(entry, true);
      return {
        number: b.number,
        hash: b.hash,
        receipts: b.receipts.length,
        size: appendBlockRows(ra, la, b),
      };
    },
    finish() {},
  }),
};

function appendBlockRows(ra: DuckDBAppender, la: DuckDBAppender, b: BlockEntry): StagedSize {
  const number = BigInt(b.number);
  const size: StagedSize = { receiptRows: b.receipts.length, receiptBytes: 0, logRows: 0, logBytes: 0 };
  size.receiptBytes = size.receiptRows * RECEIPT_ROW_BYTES;
  for (const r of b.receipts) {
    ra.appendUBigInt(number);
    ra.appendBlob(b.hash);
    ra.appendBlob(r.txHash);
    ra.appendUInteger(r.txIndex);
    ra.appendUTinyInt(r.type);
    ra.appendUTinyInt(r.status);
    ra.appendBlob(r.from);
    if (r.to) ra.appendBlob(r.to);
    else ra.appendNull();
    if (r.contractAddress) ra.appendBlob(r.contractAddress);
    else ra.appendNull();
    ra.appendUBigInt(BigInt(r.gasUsed));
    ra.appendUBigInt(BigInt(r.cumulativeGasUsed));
    ra.appendUBigInt(r.effectiveGasPrice);
    ra.appendUInteger(r.firstLogIndex);
    ra.appendUInteger(r.logs.length);
    ra.endRow();
    for (let i = 0; i < r.logs.length; i++) {
      const log = r.logs[i]!;
      la.appendUBigInt(number);
      la.appendBlob(b.hash);
      la.appendBlob(r.txHash);
      la.appendUInteger(r.txIndex);
      la.appendUInteger(r.firstLogIndex + i);
      la.appendBlob(log.address);
      for (let t = 0; t < 4; t++) {
        const topic = log.topics[t];
        if (topic) la.appendBlob(topic);
        else la.appendNull();
      }
      la.appendBlob(log.data);
      la.endRow();
      size.logRows++;
      size.logBytes += LOG_ROW_FIXED_BYTES + log.data.length;
    }
  }
  return size;
}

// ------------------------------------------------------------------ chunks (the default)

/** Rows of a DuckDB data chunk (DuckDB's vector size, the most a chunk holds). */
const CHUNK_ROWS = 2048;

/**
 * Where the COPY cuts a staged BLOB (SQL slices, 1-based, both ends inclusive). A receipt's head:
 * block hash 1..32, tx hash 33..64, tx index, type, status, flags (65..71), from 72..91, then to
 * (flags bit 0) and contract (bit 1), 20 bytes each. A log's rec: address 1..20, topic count 21,
 * topics from 22, 32 bytes each, data length, data.
 */
const HEAD_TO_AT = 92;
const REC_TOPICS_AT = 22;

function topicSql(t: number): string {
  const from = REC_TOPICS_AT + 32 * t;
  return `CASE WHEN topic_count > ${t} THEN rec[${from}:${from + 31}] END AS topic${t}`;
}

export const CHUNK_LAYOUT: StageLayout = {
  receipts: {
    columns:
      'block_number UBIGINT, tx_index UINTEGER, tx_type UTINYINT, status UTINYINT, flags UTINYINT, ' +
      'gas_used UBIGINT, cumulative_gas_used UBIGINT, effective_gas_price UBIGINT, ' +
      'first_log_index UINTEGER, log_count UINTEGER, head BLOB',
    select: [
      'block_number',
      'head[1:32] AS block_hash',
      'head[33:64] AS tx_hash',
      'tx_index',
      'tx_type',
      'status',
      'head[72:91] AS from_address',
      `CASE WHEN flags & 1 = 1 THEN head[${HEAD_TO_AT}:${HEAD_TO_AT + 19}] END AS to_address`,
      `CASE WHEN flags & 2 = 2 THEN head[${HEAD_TO_AT} + 20 * (flags & 1):${HEAD_TO_AT + 19} + 20 * (flags & 1)] END AS contract_address`,
      'gas_used',
      'cumulative_gas_used',
      'effective_gas_price',
      'first_log_index',
      'log_count',
    ].join(', '),
  },
  logs: {
    // `hashes`: the block hash and tx hash, side by side at the start of the receipt's body. (Joined
    // from stage_receipts instead, they cost one native call less per log, but the join failed
    // "Out of Memory" at a 24 MB limit where this copy passes: test/receipts/reviewSpill.test.ts.)
    columns:
      'block_number UBIGINT, tx_index UINTEGER, log_index UINTEGER, topic_count UTINYINT, hashes BLOB, rec BLOB',
    select: [
      'block_number',
      'hashes[1:32] AS block_hash',
      'hashes[33:64] AS tx_hash',
      'tx_index',
      'log_index',
      'rec[1:20] AS address',
      topicSql(0),
      topicSql(1),
      topicSql(2),
      topicSql(3),
      `rec[${REC_TOPICS_AT + 4} + 32 * topic_count:] AS data`,
    ].join(', '),
  },
  stager: (duckdb, ra, la) => new ChunkStager(duckdb, ra, la),
};

/**
 * A data chunk being filled row by row and appended when full. Its vectors are taken afresh for
 * every chunk (a chunk's row count is set before its vectors are read, and a reset may move their
 * buffers).
 */
class ChunkFill {
  readonly chunk: DuckDBDataChunk;
  vectors: DuckDBVector[] = [];
  rows = 0;

  constructor(
    duckdb: DuckDbModule,
    private readonly appender: DuckDBAppender,
  ) {
    const types = Array.from({ length: appender.columnCount }, (_, i) => appender.columnType(i));
    this.chunk = duckdb.DuckDBDataChunk.create(types);
    this.begin();
  }

  private begin(): void {
    this.chunk.reset();
    this.chunk.rowCount = CHUNK_ROWS;
    this.vectors = Array.from({ length: this.chunk.columnCount }, (_, i) => this.chunk.getColumnVector(i));
    this.rows = 0;
  }

  endRow(): void {
    if (++this.rows === CHUNK_ROWS) this.flush();
  }

  flush(): void {
    if (this.rows === 0) return;
    const vectors = this.vectors;
    // Shrinking the row count keeps the vectors' buffers; the values set so far are written to them.
    if (this.rows < CHUNK_ROWS) this.chunk.rowCount = this.rows;
    for (const v of vectors) v.flush();
    this.appender.appendDataChunk(this.chunk);
    this.begin();
  }
}

class ChunkStager implements Stager, EntryRowVisitor {
  private readonly receipts: ChunkFill;
  private readonly logs: ChunkFill;
  private readonly row: EntryRow = newEntryRow(new Uint8Array(0));
  private size: StagedSize = { receiptRows: 0, receiptBytes: 0, logRows: 0, logBytes: 0 };
  /** The block being walked (-1: before its first receipt). */
  private blockNumber = -1n;

  constructor(
    private readonly duckdb: DuckDbModule,
    ra: DuckDBAppender,
    la: DuckDBAppender,
  ) {
    this.receipts = new ChunkFill(duckdb, ra);
    this.logs = new ChunkFill(duckdb, la);
  }

  block(entry: Uint8Array): StagedBlock {
    this.size = { receiptRows: 0, receiptBytes: 0, logRows: 0, logBytes: 0 };
    this.blockNumber = -1n;
    const { number, hashAt, receipts } = walkBlockEntry(entry, this, this.row);
    return { number, hash: entry.subarray(hashAt, hashAt + 32), receipts, size: this.size };
  }

  receipt(row: EntryRow): void {
    if (this.blockNumber < 0n) this.blockNumber = BigInt(row.blockNumber);
    const f = this.receipts;
    const v = f.vectors;
    const i = f.rows;
    v[0]!.setItem(i, this.blockNumber);
    v[1]!.setItem(i, row.txIndex);
    v[2]!.setItem(i, row.type);
    v[3]!.setItem(i, row.status);
    v[4]!.setItem(i, (row.toAt < 0 ? 0 : 1) | (row.contractAt < 0 ? 0 : 2));
    v[5]!.setItem(i, row.gasUsed);
    v[6]!.setItem(i, row.cumulativeGasUsed);
    v[7]!.setItem(i, row.effectiveGasPrice);
    v[8]!.setItem(i, row.firstLogIndex);
    v[9]!.setItem(i, row.logCount);
    v[10]!.setItem(i, new this.duckdb.DuckDBBlobValue(row.bytes.subarray(row.hashesAt, row.headEnd)));
    f.endRow();
    this.size.receiptRows++;
    this.size.receiptBytes += RECEIPT_ROW_BYTES;
  }

  log(row: EntryRow): void {
    const f = this.logs;
    const v = f.vectors;
    const i = f.rows;
    v[0]!.setItem(i, this.blockNumber);
    v[1]!.setItem(i, row.txIndex);
    v[2]!.setItem(i, row.logIndex);
    v[3]!.setItem(i, row.topicCount);
    v[4]!.setItem(i, new this.duckdb.DuckDBBlobValue(row.bytes.subarray(row.hashesAt, row.hashesAt + 64)));
    v[5]!.setItem(i, new this.duckdb.DuckDBBlobValue(row.bytes.subarray(row.logAt, row.logEnd)));
    f.endRow();
    this.size.logRows++;
    this.size.logBytes += LOG_ROW_FIXED_BYTES + row.dataLength;
  }

  finish(): void {
    this.receipts.flush();
    this.logs.flush();
  }
}

export const STAGE_LAYOUTS: Record<StageLayoutName, StageLayout> = { chunks: CHUNK_LAYOUT, rows: ROW_LAYOUT };
