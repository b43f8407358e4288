import path from 'node:path';
import type {
  DuckDBBlobVector,
  DuckDBConnection,
  DuckDBInstance,
  DuckDBMaterializedResult,
  DuckDBValue,
} from '@duckdb/node-api';
import { toHex } from '../lib/bytes.ts';
import { CairnError, describe } from '../lib/errors.ts';
import type { ArchiveEngine } from './archiveEngine.ts';
import { ArchiveWriterThread } from './archiveWriterThread.ts';
import { encodeBlockEntry } from './codec.ts';
import {
  capSpill,
  DEFAULT_MAX_SPILL_SIZE,
  DEFAULT_MEMORY_LIMIT,
  isEngineOutOfMemory,
} from './duckdbLimits.ts';
import type { NormalizedFilter } from './logFilter.ts';
import { decodeEmptyBlocks, EMPTY_BLOCKS_KEY, LOG_SELECT, sqlString } from './parquetSchema.ts';
import type { BlockEntry, Log, LogInput, StoredReceipt } from './types.ts';

export interface DuckDbArchiveOptions {
  /** DuckDB worker threads of the writer thread's instance (window files). Default 2. */
  threads?: number;
  /**
   * DuckDB threads of the query instance (this thread's). Default 1: a selective log query touches
   * one or two row groups per file, too little work to split, and a second thread cost more CPU
   * than it saved on a loaded 2-core machine (same-process A/B over the bench's 150 10k-block
   * queries: 13.2 vs 15.8 ms CPU per query, and lower wall time too).
   */
  queryThreads?: number;
  /**
   * Rows per Parquet row group (DuckDB rounds up to a multiple of 2,048). Default 6,144: DuckDB
   * writes one page per column chunk, so a selective query decompresses every column of each row
   * group it touches; fewer rows per group is less to decompress, but every row group adds fixed
   * work (statistics checked per query). Measured (same process, alternating, 8 rounds of the
   * bench's 50 archive-only 10k-block queries, engine CPU p50): 6,144 rows 7.7-9.5 % below 10,240
   * and 4 % below 8,192; 4,096 was 8 % above 10,240. Archive bytes +0.54 % against 10,240 (1M-log
   * bench: 0.4964x SQLite instead of 0.4938x).
   */
  rowGroupRows?: number;
  /** Order of the rows in a logs file. Default 'address' (measured: see bench/receipts.ts). */
  logOrder?: 'address' | 'block';
  /** DuckDB memory limit (each of the two instances). Default '512MB'. */
  memoryLimit?: string;
  /**
   * Where the instances spill when a query, the stage or a window's sort outgrows `memoryLimit`:
   * each in a subdirectory of its own (`query/`, `writer/`; see SPILL_SUBDIRS). Without it DuckDB
   * uses `.tmp` under the process's working directory, which may be read-only (a service started in
   * `/`) or another disk: the store passes a directory inside its own. Scratch only.
   */
  spillDirectory?: string;
  /**
   * Most bytes each instance may spill (DuckDB's max_temp_directory_size; the query instance and the
   * writer thread's each have this cap). Default '16GiB' (DEFAULT_MAX_SPILL_SIZE); DuckDB's own
   * default is 90% of the free disk space. A query that would exceed it fails with LIMIT_EXCEEDED
   * (the store stays usable); a window write that would, with RESOURCE_EXHAUSTED (see
   * ParquetWriterOptions.maxSpillSize: a window spills up to about twice its rows' size).
   */
  maxSpillSize?: string;
  /**
   * A prebuilt JavaScript bundle of archiveWriterWorker.ts for the writer thread, when this process
   * runs bundled code (no TypeScript sources beside it). Default: the TypeScript module, via tsx.
   */
  writerThreadScript?: string;
}

/**
 * One spill directory per instance. DuckDB names its spill files by block size and a counter of its
 * own (duckdb_temp_storage_S128K-0.tmp, ...), so two instances sharing a directory open the same
 * files and overwrite each other's spilled blocks: measured (test/receipts/reviewSpill.test.ts), a
 * query spilling while the writer thread's stage was spilled made the writer read foreign bytes
 * (wrong windows, or a crash of the process).
 */
export const SPILL_SUBDIRS = { query: 'query', writer: 'writer' } as const;

function blobLiteral(bytes: Uint8Array): string {
  return `from_hex('${toHex(bytes)}')`;
}

function abortedError(signal: AbortSignal): CairnError {
  return new CairnError('ABORTED', 'the log query was aborted by its AbortSignal', { cause: signal.reason });
}

function blob(v: DuckDBValue): Uint8Array {
  const b = (v as { bytes: Uint8Array }).bytes;
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}
function optionalBlob(v: DuckDBValue): Uint8Array | undefined {
  return v === null ? undefined : blob(v);
}

function engineError(what: string, err: unknown): CairnError {
  // Not the store's failure: this one query needed more memory or spill space than the instance's
  // limits, and the instance is usable for the next one.
  if (isEngineOutOfMemory(describe(err))) {
    return new CairnError(
      'LIMIT_EXCEEDED',
      `archive engine (DuckDB) ${what} needed more than its memory limit and spill cap (DuckDbArchiveOptions memoryLimit, maxSpillSize): ${describe(err)}`,
      { cause: err },
    );
  }
  return new CairnError('IO_FATAL', `archive engine (DuckDB) ${what} failed: ${describe(err)}`, {
    cause: err,
  });
}

interface Engine {
  instance: DuckDBInstance;
}

/**
 * DuckDB is loaded on first use: importing its 68 MB native library costs 0.2-1 s, and a store that
 * only serves the hot tier (or a short-lived process) never needs it. Queries run on this thread's
 * instance; window files are written by a second instance on the archive writer thread
 * (archiveWriterThread.ts), which also stages acknowledged blocks ahead of their window's rotation.
 * See parquetSchema.ts for the files' schema.
 */
export class DuckDbArchive implements ArchiveEngine {
  private readonly idle: DuckDBConnection[] = [];
  private closed = false;
  private engine: Promise<Engine> | undefined;
  private writerThread: ArchiveWriterThread | undefined;
  private readonly rowGroupRows: number;
  private readonly logOrder: 'address' | 'block';

  private constructor(private readonly options: DuckDbArchiveOptions) {
    this.rowGroupRows = options.rowGroupRows ?? 6_144;
    this.logOrder = options.logOrder ?? 'address';
  }

  static async open(options: DuckDbArchiveOptions = {}): Promise<DuckDbArchive> {
    return new DuckDbArchive(options);
  }

  private start(): Promise<Engine> {
    this.engine ??= (async () => {
      try {
        const { DuckDBInstance } = await import('@duckdb/node-api');
        const instance = await DuckDBInstance.create(':memory:', {
          threads: String(this.options.queryThreads ?? 1),
          memory_limit: this.options.memoryLimit ?? DEFAULT_MEMORY_LIMIT,
          ...(this.options.spillDirectory === undefined
            ? {}
            : { temp_directory: path.join(this.options.spillDirectory, SPILL_SUBDIRS.query) }),
        });
        // Each query otherwise reads and parses the footer of every file it names again. The cache
        // lives as long as this instance (one store open) and is keyed by path and modification
        // time; a listed file's bytes never change while it is listed (a damaged trailing file is
        // rewritten at open, before this instance exists). Only settable once Parquet is loaded.
        const c = await instance.connect();
        try {
          await c.run('SET GLOBAL parquet_metadata_cache = true');
          await capSpill(c, this.options.maxSpillSize ?? DEFAULT_MAX_SPILL_SIZE);
        } finally {
          c.closeSync();
        }
        return { instance };
      } catch (err) {
        throw engineError('start', err);
      }
    })();
    return this.engine;
  }

  private async withReader<T>(fn: (c: DuckDBConnection) => Promise<T>): Promise<T> {
    if (this.closed) throw new CairnError('CLOSED', 'archive engine is closed');
    const { instance } = await this.start();
    const c = this.idle.pop() ?? (await instance.connect());
    try {
      return await fn(c);
    } finally {
      if (this.closed || this.idle.length >= 8) c.closeSync();
      else this.idle.push(c);
    }
  }

  private writer(): ArchiveWriterThread {
    if (this.closed) throw new CairnError('CLOSED', 'archive engine is closed');
    this.writerThread ??= ArchiveWriterThread.start(
      {
        threads: this.options.threads ?? 2,
        memoryLimit: this.options.memoryLimit ?? DEFAULT_MEMORY_LIMIT,
        maxSpillSize: this.options.maxSpillSize ?? DEFAULT_MAX_SPILL_SIZE,
        ...(this.options.spillDirectory === undefined
          ? {}
          : { spillDirectory: path.join(this.options.spillDirectory, SPILL_SUBDIRS.writer) }),
        rowGroupRows: this.rowGroupRows,
        logOrder: this.logOrder,
      },
      this.options.writerThreadScript,
    );
    return this.writerThread;
  }

  async writeWindow(
    blocks: readonly BlockEntry[],
    receiptsPath: string,
    logsPath: string,
  ): Promise<{ receiptRows: number; logRows: number }> {
    const first = blocks[0]?.number ?? 0;
    const last = first + blocks.length - 1;
    return this.writeWindowEntries(
      first,
      last,
      (from, to) => blocks.slice(from - first, to - first + 1).map((b) => encodeBlockEntry(b).payload),
      receiptsPath,
      logsPath,
    );
  }

  stageEntries(first: number, entries: readonly Uint8Array[]): void {
    if (this.closed) return;
    try {
      this.writer().stage(first, entries);
    } catch {
      // The thread did not start: the window's write starts it again and reports the failure.
    }
  }

  async writeWindowEntries(
    first: number,
    last: number,
    entries: (from: number, to: number) => readonly Uint8Array[],
    receiptsPath: string,
    logsPath: string,
  ): Promise<{ receiptRows: number; logRows: number }> {
    return this.writer().write(first, last, entries, receiptsPath, logsPath);
  }

  async queryLogs(
    logsPaths: readonly string[],
    f: NormalizedFilter,
    limit: number,
    signal?: AbortSignal,
  ): Promise<Log[]> {
    if (logsPaths.length === 0) return [];
    const where = [`block_number BETWEEN ${f.fromBlock} AND ${f.toBlock}`];
    if (f.addresses) where.push(`address IN (${f.addresses.map(blobLiteral).join(', ')})`);
    f.topics.forEach((values, i) => {
      if (values) where.push(`topic${i} IN (${values.map(blobLiteral).join(', ')})`);
    });
    const sql =
      `SELECT ${PACKED_LOG_SELECT} FROM read_parquet([${logsPaths.map(sqlString).join(', ')}]) ` +
      `WHERE ${where.join(' AND ')} ORDER BY block_number, log_index LIMIT ${limit}`;
    const rows = await this.withReader(async (c) => {
      // DuckDB stops a running query on interrupt(); the connection stays usable afterwards.
      const onAbort = (): void => c.interrupt();
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        if (signal?.aborted) throw abortedError(signal);
        return await resultToLogs(await c.run(sql));
      } catch (err) {
        if (signal?.aborted) throw abortedError(signal);
        throw engineError('log query', err);
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
    });
    return rows;
  }

  async readReceipt(
    receiptsPath: string,
    logsPath: string,
    block: number,
    txIndex: number,
  ): Promise<{ blockHash: Uint8Array; receipt: StoredReceipt } | undefined> {
    return this.withReader(async (c) => {
      try {
        const rs = (
          await c.runAndReadAll(
            `SELECT * FROM read_parquet(${sqlString(receiptsPath)}) WHERE block_number = ${block} AND tx_index = ${txIndex}`,
          )
        ).getRows();
        if (rs.length === 0) return undefined;
        const logs = (
          await c.runAndReadAll(
            `SELECT ${LOG_SELECT} FROM read_parquet(${sqlString(logsPath)}) WHERE block_number = ${block} AND tx_index = ${txIndex} ORDER BY log_index`,
          )
        ).getRows();
        return { blockHash: blob(rs[0]![1]!), receipt: rowToReceipt(rs[0]!, logs.map(rowToLogInput)) };
      } catch (err) {
        throw engineError(`receipt read from ${receiptsPath}`, err);
      }
    });
  }

  async readTxHashes(receiptsPath: string): Promise<Uint8Array[]> {
    return this.withReader(async (c) => {
      try {
        const rows = (
          await c.runAndReadAll(`SELECT tx_hash FROM read_parquet(${sqlString(receiptsPath)})`)
        ).getRows();
        return rows.map((r) => blob(r[0]!));
      } catch (err) {
        throw engineError(`tx-hash read from ${receiptsPath}`, err);
      }
    });
  }

  async readBlocks(receiptsPath: string, logsPath: string): Promise<BlockEntry[]> {
    return this.withReader(async (c) => {
      try {
        const rs = (
          await c.runAndReadAll(
            `SELECT * FROM read_parquet(${sqlString(receiptsPath)}) ORDER BY block_number, tx_index`,
          )
        ).getRows();
        const ls = (
          await c.runAndReadAll(
            `SELECT ${LOG_SELECT} FROM read_parquet(${sqlString(logsPath)}) ORDER BY block_number, log_index`,
          )
        ).getRows();
        const blocks: BlockEntry[] = [];
        let li = 0;
        for (const row of rs) {
          const number = Number(row[0] as bigint);
          const logCount = Number(row[13]);
          const logs: LogInput[] = [];
          for (let i = 0; i < logCount; i++) logs.push(rowToLogInput(ls[li++]!));
          const receipt = rowToReceipt(row, logs);
          let b = blocks[blocks.length - 1];
          if (b === undefined || b.number !== number) {
            b = { number, hash: blob(row[1]!), receipts: [] };
            blocks.push(b);
          }
          b.receipts.push(receipt);
        }
        const meta = (
          await c.runAndReadAll(
            `SELECT value::VARCHAR FROM parquet_kv_metadata(${sqlString(receiptsPath)}) WHERE key::VARCHAR = '${EMPTY_BLOCKS_KEY}'`,
          )
        ).getRows();
        const empties = meta.length === 0 ? [] : decodeEmptyBlocks(String(meta[0]![0]));
        if (empties.length === 0) return blocks;
        return [...blocks, ...empties].sort((a, b) => a.number - b.number);
      } catch (err) {
        throw engineError(`reading ${receiptsPath}`, err);
      }
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.idle.splice(0)) c.closeSync();
    // Queued window writes finish first (the store waits for its rotation before closing anyway).
    await this.writerThread?.close();
    if (this.engine === undefined) return;
    const engine = await this.engine.catch(() => undefined);
    engine?.instance.closeSync();
  }
}

function rowToLogInput(row: DuckDBValue[]): LogInput {
  const topics: Uint8Array[] = [];
  for (let t = 6; t < 10; t++) {
    if (row[t] === null) break;
    topics.push(blob(row[t]!));
  }
  return { address: blob(row[5]!), topics, data: blob(row[10]!) };
}

/**
 * The log query's select list: the fixed columns, the topic count, and every byte column of the row
 * concatenated into one BLOB — block hash 32 | tx hash 32 | address 20 | topics 32 each | data —
 * that resultToLogs cuts into views. Measured (same process, 150 queries, 10k blocks): one BLOB per
 * row instead of up to eight cut the JavaScript side of a query from ~2.8 ms to ~1.0 ms; every BLOB
 * value is a call into the native binding and a copy.
 */
const PACKED_LOG_SELECT =
  'block_number, tx_index, log_index, ' +
  '(topic0 IS NOT NULL)::UTINYINT + (topic1 IS NOT NULL)::UTINYINT + (topic2 IS NOT NULL)::UTINYINT + ' +
  '(topic3 IS NOT NULL)::UTINYINT AS topic_count, ' +
  "block_hash || tx_hash || address || coalesce(topic0, ''::BLOB) || coalesce(topic1, ''::BLOB) || " +
  "coalesce(topic2, ''::BLOB) || coalesce(topic3, ''::BLOB) || data AS packed";
const PACKED_FIXED_BYTES = 32 + 32 + 20;

/** The logs of a PACKED_LOG_SELECT result. */
async function resultToLogs(result: DuckDBMaterializedResult): Promise<Log[]> {
  const out: Log[] = [];
  for (const chunk of await result.fetchAllChunks()) {
    const blockNumber = chunk.getColumnVector(0);
    const txIndex = chunk.getColumnVector(1);
    const logIndex = chunk.getColumnVector(2);
    const topicCount = chunk.getColumnVector(3);
    const packed = chunk.getColumnVector(4) as DuckDBBlobVector;
    for (let i = 0; i < chunk.rowCount; i++) {
      // More than 12 bytes (always: 84 at least), so a copy of its own, not a view into the chunk.
      const row = packed.getItemBytes(i);
      const topics = topicCount.getItem(i) as number;
      const dataAt = PACKED_FIXED_BYTES + 32 * topics;
      if (row === null || row.byteLength < dataAt) {
        throw new Error(`archive logs file has a row of ${row?.byteLength ?? 'NULL'} bytes`);
      }
      const topicList: Uint8Array[] = [];
      for (let t = 0; t < topics; t++) topicList.push(row.subarray(84 + 32 * t, 116 + 32 * t));
      out.push({
        address: row.subarray(64, 84),
        topics: topicList,
        data: row.subarray(dataAt),
        blockNumber: Number(blockNumber.getItem(i) as bigint),
        blockHash: row.subarray(0, 32),
        txHash: row.subarray(32, 64),
        txIndex: txIndex.getItem(i) as number,
        logIndex: logIndex.getItem(i) as number,
        removed: false,
      });
    }
  }
  return out;
}

function rowToReceipt(row: DuckDBValue[], logs: LogInput[]): StoredReceipt {
  return {
    txHash: blob(row[2]!),
    txIndex: row[3] as number,
    type: row[4] as number,
    status: row[5] === 1 ? 1 : 0,
    from: blob(row[6]!),
    to: optionalBlob(row[7]!),
    contractAddress: optionalBlob(row[8]!),
    gasUsed: Number(row[9] as bigint),
    cumulativeGasUsed: Number(row[10] as bigint),
    effectiveGasPrice: row[11] as bigint,
    firstLogIndex: row[12] as number,
    logs,
  };
}
