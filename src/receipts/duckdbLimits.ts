import type { DuckDBConnection } from '@duckdb/node-api';
import { sqlString } from './parquetSchema.ts';

/**
 * The memory and spill limits of the archive's two DuckDB instances (queries on the store's thread,
 * window files on the archive writer thread): defaults, how a cap is applied, how an engine error
 * that hit them is recognised. Shared by both sides, so it imports nothing of either.
 */

/** DuckDB memory limit of each instance. */
export const DEFAULT_MEMORY_LIMIT = '512MB';
/** Spill cap of each instance (DuckDB's own default is 90% of the free disk space). */
export const DEFAULT_MAX_SPILL_SIZE = '16GiB';

/**
 * True for DuckDB's out-of-memory failures: the memory limit was reached and what did not fit could
 * not be spilled (the spill cap, max_temp_directory_size, was reached too, or the operator does not
 * spill). Most carry "Out of Memory Error"; an appender's says "Failed to append: failed to offload
 * data block ..." (measured, DuckDB 1.5.6).
 */
export function isEngineOutOfMemory(message: string): boolean {
  return (
    message.includes('Out of Memory Error') ||
    message.includes('max_temp_directory_size') ||
    /failed to (offload|pin|allocate)|could not allocate/i.test(message)
  );
}

/**
 * Sets an instance's spill cap. With SQL once the instance exists, not in its creation options:
 * measured (DuckDB 1.5.6), a max_temp_directory_size given at creation beside temp_directory was
 * reported by current_setting but not enforced (a 16 MB cap let 175 MB spill); SET was enforced.
 */
export async function capSpill(c: DuckDBConnection, maxSpillSize: string): Promise<void> {
  await c.run(`SET GLOBAL max_temp_directory_size = ${sqlString(maxSpillSize)}`);
}

/** Bytes of a DuckDB size setting ('512MB', '1GiB', '24 MB', ...); NaN if it is not one. */
export function parseByteSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(b|bytes|kb|mb|gb|tb|kib|mib|gib|tib)?\s*$/i.exec(text);
  if (!m) return Number.NaN;
  const scale: Record<string, number> = {
    b: 1,
    bytes: 1,
    kb: 1e3,
    mb: 1e6,
    gb: 1e9,
    tb: 1e12,
    kib: 2 ** 10,
    mib: 2 ** 20,
    gib: 2 ** 30,
    tib: 2 ** 40,
  };
  return Math.floor(Number(m[1]) * scale[(m[2] ?? 'b').toLowerCase()]!);
}
