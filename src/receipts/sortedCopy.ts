import type { DuckDBConnection, DuckDBValue } from '@duckdb/node-api';
import { toHex } from '../lib/bytes.ts';
import { sqlString } from './parquetSchema.ts';

/** A column of a sort key and how its values are written back as SQL literals. */
export interface SortKeyColumn {
  name: string;
  type: 'BLOB' | 'integer';
}

export interface SortedCopy {
  /** Table the rows come from. */
  table: string;
  /**
   * Select list giving the file's columns from the table's rows (default `*`: the table has them), and
   * their declared columns (for the sorted copy's table). The key, the row-bytes estimate and the
   * sort refer to the file's columns.
   */
  select?: string;
  columns: string;
  /** Which rows of `table` (SQL condition). */
  where: string;
  /** Sort key, most significant first; must be unique per row (boundaries split between keys). */
  key: readonly SortKeyColumn[];
  /** SQL estimate of a row's bytes as DuckDB sorts it (payload included). */
  rowBytesSql: string;
  /** Rows and estimated bytes (the sum of rowBytesSql) of the selected rows. */
  rows: number;
  bytes: number;
  /** Most estimated bytes one sort may hold (see ParquetWriterOptions.sortSliceBytes). */
  sliceBytes: number;
  /** Rows of the key sample (default SAMPLE_ROWS; tests use fewer to sample on small tables). */
  sampleRows?: number;
  /** File to write and the COPY options. */
  path: string;
  copyOptions: string;
}

/** Rows of the key sample that choose the slice boundaries: bounded, so the sample's own sort is. */
const SAMPLE_ROWS = 100_000;

/**
 * Writes the selected rows of a table to one file in key order, in memory bounded by `sliceBytes`.
 * Why: DuckDB 1.5's ORDER BY does not spill its payload. Measured (scratch experiment, 24 MB memory
 * limit, 80,000 log rows of ~400 bytes = 32 MB): `COPY (... ORDER BY ...)` failed with "Out of
 * Memory" whether the rows came from an in-memory or an on-disk table, with or without
 * preserve_insertion_order, in address or block order, to Parquet or CSV; the same copy without
 * ORDER BY, or a sort of the key columns alone, ran in 4 MB. So a window up to `sliceBytes` is one
 * `COPY … ORDER BY` (the common case, unchanged), and a larger one is cut into key ranges of at most
 * about `sliceBytes`: each range is sorted on its own and appended to a scratch table (DuckDB keeps
 * the insertion order of an `INSERT … ORDER BY` and spills such a table), which is then copied to
 * the file in that order without a sort. The file is the same either way: the same rows in the same
 * order. The range boundaries are keys of a systematic sample of the rows (every step-th row id,
 * deterministic), sorted by key and weighted by their estimated bytes.
 */
export async function copySorted(
  c: DuckDBConnection,
  s: SortedCopy,
): Promise<{ rows: number; slices: number }> {
  const order = s.key.map((k) => k.name).join(', ');
  const select = s.select ?? '*';
  if (s.bytes <= s.sliceBytes) {
    const rows = await copyRows(
      c,
      `COPY (SELECT ${select} FROM ${s.table} WHERE ${s.where} ORDER BY ${order}) TO ${sqlString(s.path)} (${s.copyOptions})`,
    );
    return { rows, slices: 1 };
  }
  const bounds = await sliceBoundaries(c, s);
  const scratch = `${s.table}_sorted`;
  await c.run(`CREATE OR REPLACE TEMP TABLE ${scratch} (${s.columns})`);
  try {
    for (let i = 0; i <= bounds.length; i++) {
      const range: string[] = [];
      if (i > 0) range.push(atLeast(s.key, bounds[i - 1]!));
      if (i < bounds.length) range.push(`NOT ${atLeast(s.key, bounds[i]!)}`);
      const rows = `SELECT ${select} FROM ${s.table} WHERE ${s.where}`;
      await c.run(
        `INSERT INTO ${scratch} SELECT * FROM (${rows}) WHERE ${range.join(' AND ')} ORDER BY ${order}`,
      );
    }
    // One thread for the ordered copy: with more, DuckDB's order-preserving Parquet writer holds a
    // row group per thread plus the ones waiting for their turn (measured: 2 threads failed at a
    // 24 MB limit with 5 MB row groups, 1 thread did not). The instance is this writer's alone and
    // runs one statement at a time, so the setting is restored before anything else runs.
    const threads = Number((await c.runAndReadAll("SELECT current_setting('threads')")).getRows()[0]?.[0]);
    await c.run('SET threads = 1');
    try {
      const rows = await copyRows(
        c,
        `COPY (SELECT * FROM ${scratch}) TO ${sqlString(s.path)} (${s.copyOptions})`,
      );
      return { rows, slices: bounds.length + 1 };
    } finally {
      if (Number.isSafeInteger(threads) && threads > 1) await c.run(`SET threads = ${threads}`);
    }
  } finally {
    await c.run(`DROP TABLE IF EXISTS ${scratch}`);
  }
}

/** Runs a COPY and returns the row count DuckDB reports for it. */
async function copyRows(c: DuckDBConnection, sql: string): Promise<number> {
  const rows = (await c.runAndReadAll(sql)).getRows();
  return Number(rows[0]?.[0] ?? Number.NaN);
}

/** Keys (as SQL literals) where a new slice starts, ascending; empty: one slice. */
async function sliceBoundaries(c: DuckDBConnection, s: SortedCopy): Promise<string[][]> {
  const step = Math.max(1, Math.ceil(s.rows / (s.sampleRows ?? SAMPLE_ROWS)));
  const order = s.key.map((k) => k.name).join(', ');
  const sample = step === 1 ? '' : ` AND rowid % ${step} = 0`;
  const select = s.select ?? '*';
  const result = await c.stream(
    `SELECT ${order}, (${s.rowBytesSql})::UBIGINT FROM (SELECT ${select} FROM ${s.table} WHERE ${s.where}${sample}) ORDER BY ${order}`,
  );
  // Slices a little under the budget: sampled weights are estimates.
  const target = (s.sliceBytes * 3) / 4;
  const bounds: string[][] = [];
  let filled = 0;
  for (;;) {
    const chunk = await result.fetchChunk();
    if (chunk === null || chunk.rowCount === 0) break;
    const bytesColumn = chunk.getColumnVector(s.key.length);
    for (let i = 0; i < chunk.rowCount; i++) {
      const rowBytes = Number(bytesColumn.getItem(i) as bigint) * step;
      if (filled > 0 && filled + rowBytes > target) {
        bounds.push(s.key.map((k, j) => literal(k, chunk.getColumnVector(j).getItem(i))));
        filled = 0;
      }
      filled += rowBytes;
    }
  }
  return bounds;
}

function literal(k: SortKeyColumn, v: DuckDBValue): string {
  if (k.type === 'integer') return String(v as bigint | number);
  return `from_hex('${toHex((v as { bytes: Uint8Array }).bytes)}')`;
}

/** SQL: the row's key is at or after `bound` (lexicographic over the key's columns). */
function atLeast(key: readonly SortKeyColumn[], bound: readonly string[]): string {
  let expr = `${key.at(-1)!.name} >= ${bound.at(-1)!}`;
  for (let j = key.length - 2; j >= 0; j--) {
    expr = `(${key[j]!.name} > ${bound[j]!} OR (${key[j]!.name} = ${bound[j]!} AND ${expr}))`;
  }
  return expr;
}
