import type { DuckDBAppender, DuckDBBlobValue, DuckDBDataChunk, DuckDBVector } from '@duckdb/node-api';
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
 * How blocks are staged in the writer's in-memory tables, and how the COPY turns a stage table's
 * rows back into the files' columns. Two layouts write the same files (same columns, rows, order):
 * - `chunks` (the default): entries are walked once (codec.ts walkBlockEntry) straight into DuckDB
 *   data chunks of 2,048 rows. Numeric columns are set in typed arrays without a native call each;
 *   a log is staged as two BLOBs only, views into the entry: its block hash + tx hash (64 bytes
 *   side by side in the receipt body) and its whole encoded record (address, topic count, topics,
 *   data length, data), which the COPY cuts into the file's columns. So a log row costs 2 native
 *   calls instead of 13 appender calls, and no receipt or log objects are built.
 * - `rows`: the previous path, kept as the same-run baseline of bench/receiptStaging.ts and as the
 *   oracle of the layout tests: each entry decoded into receipt and log objects, then appended one
 *   value at a time (the stage tables have the files' columns).
 */
export type StageLayoutName = 'chunks' | 'rows';

export interface StageLayout {
  /** Declared columns of stage_receipts and stage_logs. */
  receiptColumns: string;
  logColumns: string;
  /**
   * Select lists giving the files' columns (RECEIPT_COLUMNS / LOG_COLUMNS, in order, by those
   * names) from a stage table's rows; `*` when the stage table has them already.
   */
  receiptSelect: string;
  logSelect: string;
  stager(duckdb: DuckDbModule, receipts: DuckDBAppender, logs: DuckDBAppender): Stager;
}

// ------------------------------------------------------------------ rows (the previous path)

export const ROW_LAYOUT: StageLayout = {
  receiptColumns: RECEIPT_COLUMNS,
  logColumns: LOG_COLUMNS,
  receiptSelect: '*',
  logSelect: '*',
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

/** The log record's byte offsets (1-based for SQL slices): address, topic count, topics, then data. */
const TOPICS_AT = 22;

function topicSql(t: number): string {
  const from = TOPICS_AT + 32 * t;
  return `CASE WHEN topic_count > ${t} THEN rec[${from}:${from + 31}] END AS topic${t}`;
}

export const CHUNK_LAYOUT: StageLayout = {
  receiptColumns: RECEIPT_COLUMNS,
  // `hashes`: block hash (32) then tx hash (32); `rec`: the log as encoded in the entry.
  logColumns:
    'block_number UBIGINT, tx_index UINTEGER, log_index UINTEGER, topic_count UTINYINT, hashes BLOB, rec BLOB',
  receiptSelect: '*',
  logSelect: [
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
    `rec[${TOPICS_AT + 4} + 32 * topic_count:] AS data`,
  ].join(', '),
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

/**
 * A BLOB value: the vectors keep the value object until they are flushed and read only its
 * `bytes` then, so a view is wrapped without copying.
 */
function blob(duckdb: DuckDbModule, bytes: Uint8Array): DuckDBBlobValue {
  return new duckdb.DuckDBBlobValue(bytes);
}

class ChunkStager implements Stager, EntryRowVisitor {
  private readonly receipts: ChunkFill;
  private readonly logs: ChunkFill;
  private readonly row: EntryRow = newEntryRow(new Uint8Array(0));
  private size: StagedSize = { receiptRows: 0, receiptBytes: 0, logRows: 0, logBytes: 0 };
  private blockHash: DuckDBBlobValue | undefined;
  private blockNumber = 0n;

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
    this.blockHash = undefined;
    // The block number is read before any row: walkBlockEntry calls back only after its header.
    const { number, hashAt, receipts } = walkBlockEntry(entry, this, this.row);
    return { number, hash: entry.subarray(hashAt, hashAt + 32), receipts, size: this.size };
  }

  receipt(row: EntryRow): void {
    const duckdb = this.duckdb;
    const bytes = row.bytes;
    if (this.blockHash === undefined) {
      this.blockHash = blob(duckdb, bytes.subarray(row.blockHashAt, row.blockHashAt + 32));
      this.blockNumber = BigInt(row.blockNumber);
    }
    const f = this.receipts;
    const v = f.vectors;
    const i = f.rows;
    v[0]!.setItem(i, this.blockNumber);
    v[1]!.setItem(i, this.blockHash);
    v[2]!.setItem(i, blob(duckdb, bytes.subarray(row.txHashAt, row.txHashAt + 32)));
    v[3]!.setItem(i, row.txIndex);
    v[4]!.setItem(i, row.type);
    v[5]!.setItem(i, row.status);
    v[6]!.setItem(i, blob(duckdb, bytes.subarray(row.fromAt, row.fromAt + 20)));
    v[7]!.setItem(i, row.toAt < 0 ? null : blob(duckdb, bytes.subarray(row.toAt, row.toAt + 20)));
    v[8]!.setItem(
      i,
      row.contractAt < 0 ? null : blob(duckdb, bytes.subarray(row.contractAt, row.contractAt + 20)),
    );
    v[9]!.setItem(i, row.gasUsed);
    v[10]!.setItem(i, row.cumulativeGasUsed);
    v[11]!.setItem(i, row.effectiveGasPrice);
    v[12]!.setItem(i, row.firstLogIndex);
    v[13]!.setItem(i, row.logCount);
    f.endRow();
    this.size.receiptRows++;
    this.size.receiptBytes += RECEIPT_ROW_BYTES;
  }

  log(row: EntryRow): void {
    const duckdb = this.duckdb;
    const bytes = row.bytes;
    const f = this.logs;
    const v = f.vectors;
    const i = f.rows;
    v[0]!.setItem(i, this.blockNumber);
    v[1]!.setItem(i, row.txIndex);
    v[2]!.setItem(i, row.logIndex);
    v[3]!.setItem(i, row.topicCount);
    v[4]!.setItem(i, blob(duckdb, bytes.subarray(row.hashesAt, row.hashesAt + 64)));
    v[5]!.setItem(i, blob(duckdb, bytes.subarray(row.logAt, row.logEnd)));
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
