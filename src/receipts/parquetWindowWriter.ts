import type { DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { capSpill, parseByteSize } from './duckdbLimits.ts';
import {
  EMPTY_BLOCKS_KEY,
  encodeEmptyBlocks,
  LOG_COLUMNS,
  PARQUET_COPY_OPTIONS,
  RECEIPT_COLUMNS,
  sqlString,
} from './parquetSchema.ts';
import { copySorted } from './sortedCopy.ts';
import {
  type DuckDbModule,
  LOG_ROW_FIXED_BYTES,
  RECEIPT_ROW_BYTES,
  STAGE_LAYOUTS,
  type StagedSize,
  type StageLayout,
  type StageLayoutName,
} from './stageLayouts.ts';
import type { BlockEntry } from './types.ts';

export interface ParquetWriterOptions {
  threads: number;
  memoryLimit: string;
  /** Spill cap (DuckDB max_temp_directory_size); DuckDB's default when absent. */
  maxSpillSize?: string;
  /** DuckDB's spill directory (see DuckDbArchiveOptions.spillDirectory). */
  spillDirectory?: string;
  rowGroupRows: number;
  logOrder: 'address' | 'block';
  /**
   * Most estimated bytes of rows one sort holds (see sortedCopy.ts): a window's table larger than
   * this is sorted in key ranges of at most about this size. Default: a fifth of `memoryLimit`
   * (measured: a 24 MB limit sorted 8 MB of logs in one piece, not 15 MB).
   */
  sortSliceBytes?: number;
  /**
   * How blocks are staged (stageLayouts.ts); default `chunks`. Both write the same files; `rows`
   * is the previous path, kept as a benchmark baseline and test oracle.
   */
  stageLayout?: StageLayoutName;
}

const LOG_ROW_BYTES_SQL = `${LOG_ROW_FIXED_BYTES} + octet_length(data)`;

/**
 * Turns receipt-WAL entries into a window's two Parquet files with its own DuckDB instance. It runs
 * on the archive writer thread (archiveWriterWorker.ts), so that walking the entries, the appends
 * (synchronous native work) and the sort + Parquet encoding use another core than the write path.
 * Blocks are staged into in-memory tables (in a stage layout, stageLayouts.ts) as they are
 * acknowledged (`stage`), so that closing a window is only the two sorted copies (sortedCopy.ts:
 * one COPY, or key ranges when the window's rows outgrow `sortSliceBytes`); a window whose blocks
 * were not all staged in order (after an open, a gap) is staged from the entries given to `write`.
 * The stage tables spill past the memory limit.
 */
export class ParquetWindowWriter {
  /** Staged blocks are exactly [stagedFirst, stagedNext). */
  private stagedFirst = 0;
  private stagedNext = 0;
  /** Hashes of staged blocks without receipts (they have no rows; the receipts file lists them). */
  private readonly emptyBlocks = new Map<number, Uint8Array>();
  /** Rows and sort bytes of each staged block (to size the window's sort). */
  private readonly stagedSizes = new Map<number, StagedSize>();
  private readonly sliceBytes: number;
  private readonly layout: StageLayout;
  /** Sort slices of the last window written (tests check which path a window took). */
  lastSlices = { receipts: 0, logs: 0 };

  private constructor(
    private readonly duckdb: DuckDbModule,
    private readonly instance: DuckDBInstance,
    private readonly c: DuckDBConnection,
    private readonly options: ParquetWriterOptions,
  ) {
    this.layout = STAGE_LAYOUTS[options.stageLayout ?? 'chunks'];
    const limit = parseByteSize(options.memoryLimit);
    this.sliceBytes = options.sortSliceBytes ?? (Number.isFinite(limit) ? Math.floor(limit / 5) : 64 << 20);
  }

  static async open(options: ParquetWriterOptions): Promise<ParquetWindowWriter> {
    const duckdb = await import('@duckdb/node-api');
    const instance = await duckdb.DuckDBInstance.create(':memory:', {
      threads: String(options.threads),
      memory_limit: options.memoryLimit,
      ...(options.spillDirectory === undefined ? {} : { temp_directory: options.spillDirectory }),
    });
    const writer = new ParquetWindowWriter(duckdb, instance, await instance.connect(), options);
    if (options.maxSpillSize !== undefined) await capSpill(writer.c, options.maxSpillSize);
    await writer.resetStage(0);
    return writer;
  }

  private async resetStage(first: number): Promise<void> {
    await this.c.run(`CREATE OR REPLACE TEMP TABLE stage_receipts (${this.layout.receipts.columns})`);
    await this.c.run(`CREATE OR REPLACE TEMP TABLE stage_logs (${this.layout.logs.columns})`);
    this.emptyBlocks.clear();
    this.stagedSizes.clear();
    this.stagedFirst = first;
    this.stagedNext = first;
  }

  /** Appends consecutive blocks starting at `first`; a gap restarts the stage at `first`. */
  async stage(first: number, entries: readonly Uint8Array[]): Promise<void> {
    if (entries.length === 0) return;
    if (first !== this.stagedNext) await this.resetStage(first);
    const stagedFirst = this.stagedFirst;
    // Until this batch is complete the stage is unusable: a failure midway leaves part of a block,
    // and the next stage or write starts it over.
    this.stagedFirst = -1;
    this.stagedNext = -1;
    const ra = await this.c.createAppender('stage_receipts');
    const la = await this.c.createAppender('stage_logs');
    try {
      const stager = this.layout.stager(this.duckdb, ra, la);
      for (let i = 0; i < entries.length; i++) {
        // Rows refer to the buffer this thread was given until they are appended (DuckDB copies them).
        const b = stager.block(entries[i]!);
        if (b.number !== first + i) {
          throw new Error(`staged entry ${i} is block ${b.number}, expected ${first + i}`);
        }
        if (b.receipts === 0) this.emptyBlocks.set(b.number, b.hash);
        this.stagedSizes.set(b.number, b.size);
      }
      stager.finish();
    } finally {
      ra.closeSync();
      la.closeSync();
    }
    this.stagedFirst = stagedFirst;
    this.stagedNext = first + entries.length;
  }

  /** True when [first, last] can be written from the stage alone. */
  covers(first: number, last: number): boolean {
    return this.stagedFirst === first && this.stagedNext > last;
  }

  /**
   * Writes blocks [first, last] to the two paths (not durable: the store fsyncs them) and drops them
   * from the stage. `entries` (the window's WAL entries) are required unless the stage covers it.
   */
  async write(
    first: number,
    last: number,
    entries: readonly Uint8Array[] | undefined,
    receiptsPath: string,
    logsPath: string,
  ): Promise<{ receiptRows: number; logRows: number }> {
    if (!this.covers(first, last)) {
      if (entries === undefined || entries.length !== last - first + 1) {
        throw new Error(`blocks ${first}..${last} are not staged and were not given`);
      }
      await this.resetStage(first);
      await this.stage(first, entries);
    }
    const empties: Pick<BlockEntry, 'number' | 'hash' | 'receipts'>[] = [];
    for (const [number, hash] of this.emptyBlocks) {
      if (number >= first && number <= last) empties.push({ number, hash, receipts: [] });
    }
    empties.sort((a, b) => a.number - b.number);
    const range = `block_number BETWEEN ${first} AND ${last}`;
    const rowGroups = `ROW_GROUP_SIZE ${this.options.rowGroupRows}`;
    const kv = `KV_METADATA {${EMPTY_BLOCKS_KEY}: ${sqlString(encodeEmptyBlocks(empties))}}`;
    const size: StagedSize = { receiptRows: 0, receiptBytes: 0, logRows: 0, logBytes: 0 };
    for (let n = first; n <= last; n++) {
      const b = this.stagedSizes.get(n);
      if (b === undefined) continue;
      size.receiptRows += b.receiptRows;
      size.receiptBytes += b.receiptBytes;
      size.logRows += b.logRows;
      size.logBytes += b.logBytes;
    }
    const block = { name: 'block_number', type: 'integer' } as const;
    const receipts = await copySorted(this.c, {
      table: 'stage_receipts',
      select: this.layout.receipts.select,
      columns: RECEIPT_COLUMNS,
      where: range,
      key: [block, { name: 'tx_index', type: 'integer' }],
      rowBytesSql: String(RECEIPT_ROW_BYTES),
      rows: size.receiptRows,
      bytes: size.receiptBytes,
      sliceBytes: this.sliceBytes,
      path: receiptsPath,
      copyOptions: `${PARQUET_COPY_OPTIONS.receipts}, ${rowGroups}, ${kv}`,
    });
    const logIndex = { name: 'log_index', type: 'integer' } as const;
    const logs = await copySorted(this.c, {
      table: 'stage_logs',
      select: this.layout.logs.select,
      columns: LOG_COLUMNS,
      where: range,
      key:
        this.options.logOrder === 'address'
          ? [{ name: 'address', type: 'BLOB' }, block, logIndex]
          : [block, logIndex],
      rowBytesSql: LOG_ROW_BYTES_SQL,
      rows: size.logRows,
      bytes: size.logBytes,
      sliceBytes: this.sliceBytes,
      path: logsPath,
      copyOptions: `${PARQUET_COPY_OPTIONS.logs}, ${rowGroups}`,
    });
    const receiptRows = receipts.rows;
    const logRows = logs.rows;
    this.lastSlices = { receipts: receipts.slices, logs: logs.slices };
    // Later blocks staged ahead of this window stay for the next one. They are carried into fresh
    // tables rather than the window's rows DELETEd: DuckDB keeps the memory of deleted rows in an
    // in-memory table, so under load (blocks staged ahead at every rotation) the stage would grow
    // by a whole window per rotation until the memory limit failed a stage.
    if (this.stagedNext > last + 1) {
      // Until both tables are carried over the stage is unusable (a failure between them would
      // leave one table without the blocks ahead): the next write then stages from its entries.
      const stagedNext = this.stagedNext;
      this.stagedFirst = -1;
      this.stagedNext = -1;
      await this.carryOver('stage_receipts', this.layout.receipts.columns, last);
      await this.carryOver('stage_logs', this.layout.logs.columns, last);
      for (const n of [...this.emptyBlocks.keys()]) if (n <= last) this.emptyBlocks.delete(n);
      for (const n of [...this.stagedSizes.keys()]) if (n <= last) this.stagedSizes.delete(n);
      this.stagedFirst = last + 1;
      this.stagedNext = stagedNext;
    } else {
      await this.resetStage(last + 1);
    }
    return { receiptRows, logRows };
  }

  /** Replaces stage table `table` by a fresh one (same declared columns) holding its rows above `last`. */
  private async carryOver(table: string, columns: string, last: number): Promise<void> {
    const keep = `${table}_keep`;
    await this.c.run(
      `CREATE OR REPLACE TEMP TABLE ${keep} AS SELECT * FROM ${table} WHERE block_number > ${last}`,
    );
    await this.c.run(`CREATE OR REPLACE TEMP TABLE ${table} (${columns})`);
    await this.c.run(`INSERT INTO ${table} SELECT * FROM ${keep}`);
    await this.c.run(`DROP TABLE ${keep}`);
  }

  close(): void {
    this.c.closeSync();
    this.instance.closeSync();
  }
}
