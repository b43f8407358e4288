import { CairnError, describe, type ErrorCode, errnoCode } from '../lib/errors.ts';

/**
 * Maps an error raised by the key-value engine (classic-level / LevelDB) to a typed CairnError,
 * by the engine's error CODE only. The engine's messages embed the database path, and matching
 * text (a path like `<data-dir>/blocks/index` contains "lock") misclassified every failure as a
 * lock held by another process.
 *
 *   LEVEL_LOCKED      → LOCKED   (transient: another process holds the LOCK file)
 *   LEVEL_CORRUPTION  → CORRUPT  (fatal: damaged engine files; the index is derived, rebuild it)
 *   LEVEL_IO_ERROR    → IO_FATAL
 *   anything else     → IO_FATAL (with the engine's code in details)
 *
 * classic-level wraps the native error (e.g. LEVEL_DATABASE_NOT_OPEN with `cause` LEVEL_CORRUPTION
 * when open fails), so the whole `cause` chain is inspected.
 */
export function engineError(err: unknown, what: string, location: string): CairnError {
  if (err instanceof CairnError) return err;
  const codes = engineCodes(err);
  const code: ErrorCode = codes.includes('LEVEL_LOCKED')
    ? 'LOCKED'
    : codes.includes('LEVEL_CORRUPTION')
      ? 'CORRUPT'
      : 'IO_FATAL';
  const innermost = innermostCause(err);
  const text =
    describe(err) === describe(innermost) ? describe(err) : `${describe(err)}: ${describe(innermost)}`;
  const message =
    code === 'LOCKED'
      ? `${what}: ${location} is locked by another process (${text})`
      : code === 'CORRUPT'
        ? `${what}: the engine reports damaged files (${text})`
        : `${what} failed: ${text}`;
  return new CairnError(code, message, {
    cause: err,
    details: { file: location, engineCodes: codes, errno: errnoCode(innermost) },
  });
}

/** Every string `code` along the error's `cause` chain, outermost first. */
export function engineCodes(err: unknown): string[] {
  const out: string[] = [];
  let e: unknown = err;
  for (let depth = 0; depth < 8 && typeof e === 'object' && e !== null; depth++) {
    const code = errnoCode(e);
    if (code !== undefined) out.push(code);
    e = (e as { cause?: unknown }).cause;
  }
  return out;
}

function innermostCause(err: unknown): unknown {
  let e: unknown = err;
  for (let depth = 0; depth < 8; depth++) {
    const next = typeof e === 'object' && e !== null ? (e as { cause?: unknown }).cause : undefined;
    if (next === undefined) return e;
    e = next;
  }
  return e;
}
