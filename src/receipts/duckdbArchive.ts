import type { DuckDBConnection, DuckDBInstance, DuckDBValue } from '@duckdb/node-api';
import { toHex } from '../lib/bytes.ts';
import { CairnError, describe } from '../lib/errors.ts';
import type { ArchiveEngine } from './archiveEngine.ts';
import { ArchiveWriterThread } from './archiveWriterThread.ts';
import { encodeBlockEntry } from './codec.ts';
import type { NormalizedFilter } from './logFilter.ts';
import { decodeEmptyBlocks, EMPTY_BLOCKS_KEY, LOG_SELECT, sqlString } from './parquetSchema.ts';
import type { BlockEntry, Log, LogInput, StoredReceipt } from './types.ts';

export interface DuckDbArchiveOptions {
  /** DuckDB worker threads of the writer thread's instance (window files). Default 2. */
  threads?: number;
  /**
   * DuckDB threads of the query instance (this thread's). Default 1: a selective log query touches
   * one or two row groups per file, too little work to split, and a second thread cost more CPU
   * than it saved on a loaded 2-core machine (same-process A/B, see the receipts bench notes).
   */
  queryThreads?: number;
  /** Rows per Parquet row group (DuckDB rounds up to a multiple of 2,048). Default 10,240. */
  rowGroupRows?: number;
  /** Order of the rows in a logs file. Default 'address' (measured: see bench/receipts.ts). */
  logOrder?: 'address' | 'block';
  /** DuckDB memory limit (each of the two instances). Default '512MB'. */
  memoryLimit?: string;
  /**
   * Where both instances spill when a query or a window's sort outgrows `memoryLimit`. Without it
   * DuckDB uses `.tmp` under the process's working directory, which may be read-only (a service
   * started in `/`) or another disk: the store passes a directory inside its own. Scratch only.
   */
  spillDirectory?: string;
  /**
   * A prebuilt JavaScript bundle of archiveWriterWorker.ts for the writer thread, when this process
   * runs bundled code (no TypeScript sources beside it). Default: the TypeScript module, via tsx.
   */
  writerThreadScript?: string;
}

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
    this.rowGroupRows = options.rowGroupRows ?? 10_240;
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
          memory_limit: this.options.memoryLimit ?? '512MB',
          ...(this.options.spillDirectory === undefined
            ? {}
            : { temp_directory: this.options.spillDirectory }),
        });
        // Each query otherwise reads and parses the footer of every file it names again. The cache
        // lives as long as this instance (one store open) and is keyed by path and modification
        // time; a listed file's bytes never change while it is listed (a damaged trailing file is
        // rewritten at open, before this instance exists). Only settable once Parquet is loaded.
        const c = await instance.connect();
        try {
          await c.run('SET GLOBAL parquet_metadata_cache = true');
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
        memoryLimit: this.options.memoryLimit ?? '512MB',
        ...(this.options.spillDirectory === undefined ? {} : { spillDirectory: this.options.spillDirectory }),
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
      () => blocks.map((b) => encodeBlockEntry(b).payload),
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
    entries: () => readonly Uint8Array[],
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
      `SELECT ${LOG_SELECT} FROM read_parquet([${logsPaths.map(sqlString).join(', ')}]) ` +
      `WHERE ${where.join(' AND ')} ORDER BY block_number, log_index LIMIT ${limit}`;
    const rows = await this.withReader(async (c) => {
      // DuckDB stops a running query on interrupt(); the connection stays usable afterwards.
      const onAbort = (): void => c.interrupt();
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        if (signal?.aborted) throw abortedError(signal);
        return (await c.runAndReadAll(sql)).getRows();
      } catch (err) {
        if (signal?.aborted) throw abortedError(signal);
        throw engineError('log query', err);
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
    });
    return rows.map(rowToLog);
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

function rowToLog(row: DuckDBValue[]): Log {
  const input = rowToLogInput(row);
  return {
    address: input.address,
    topics: input.topics as Uint8Array[],
    data: input.data,
    blockNumber: Number(row[0] as bigint),
    blockHash: blob(row[1]!),
    txHash: blob(row[2]!),
    txIndex: row[3] as number,
    logIndex: row[4] as number,
    removed: false,
  };
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
