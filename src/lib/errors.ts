/**
 * One error type for all of Cairn. `code` is stable and machine-readable; `kind` tells the caller
 * what to do about it:
 *  - caller:    the request was wrong (bad argument, out of range, after close). Retrying the same
 *               request will fail the same way; nothing was written.
 *  - transient: the request may succeed later (lock held by another process, queue full).
 *  - fatal:     the store cannot continue (I/O failure, corruption). Stores latch fatal errors:
 *               every later call rejects with the same error.
 */
export type ErrorKind = 'caller' | 'transient' | 'fatal';

export const ErrorCodes = {
  INVALID_ARGUMENT: 'caller',
  OUT_OF_RANGE: 'caller',
  OUT_OF_ORDER: 'caller',
  RECORD_TOO_LARGE: 'caller',
  CONFLICT: 'caller',
  CLOSED: 'caller',
  NOT_FOUND: 'caller',
  PRUNED: 'caller',
  /** A read would exceed a configured bound (block range, result count, result bytes). */
  LIMIT_EXCEEDED: 'caller',
  /** The caller's AbortSignal fired. */
  ABORTED: 'caller',
  LOCKED: 'transient',
  BACKPRESSURE: 'transient',
  IO_FATAL: 'fatal',
  /**
   * An engine ran out of the memory or scratch space it was configured with, writing derived data
   * the store cannot go on without (an archive window): the message names the settings to raise.
   */
  RESOURCE_EXHAUSTED: 'fatal',
  WAL_CORRUPT: 'fatal',
  AB_CORRUPT: 'fatal',
  DECODE: 'fatal',
  GAP: 'fatal',
  DATA_LOSS: 'fatal',
  CORRUPT: 'fatal',
} as const satisfies Record<string, ErrorKind>;

export type ErrorCode = keyof typeof ErrorCodes;

export interface ErrorDetails {
  /** File the error is about, when there is one. */
  file?: string;
  /** Byte offset inside `file`. */
  offset?: number;
  [key: string]: unknown;
}

export class CairnError extends Error {
  readonly code: ErrorCode;
  readonly kind: ErrorKind;
  readonly details: ErrorDetails;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: ErrorDetails } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CairnError';
    this.code = code;
    this.kind = ErrorCodes[code];
    this.details = options.details ?? {};
  }
}

export function isCairnError(err: unknown, code?: ErrorCode): err is CairnError {
  return err instanceof CairnError && (code === undefined || err.code === code);
}

/** Node-style errno code of an unknown error (`ENOENT`, `EIO`, ...), if it has one. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

/** Wraps an OS error from a write/sync path as the fatal error a store latches on. */
export function ioFatal(what: string, cause: unknown, details: ErrorDetails = {}): CairnError {
  const errno = errnoCode(cause);
  const suffix = errno ? ` (${errno})` : '';
  return new CairnError('IO_FATAL', `${what} failed${suffix}: ${describe(cause)}`, { cause, details });
}

export function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Remembers the first fatal error of a store. Once latched, `check()` throws that same error on
 * every call: a store that saw a failed write or fsync must never pretend to be healthy again.
 */
export class FatalLatch {
  private latched: CairnError | undefined;

  get error(): CairnError | undefined {
    return this.latched;
  }

  /** Latches `err` (wrapping non-Cairn errors as IO_FATAL) and returns the latched error. */
  latch(err: unknown, what = 'I/O'): CairnError {
    if (this.latched === undefined) {
      this.latched = err instanceof CairnError && err.kind === 'fatal' ? err : ioFatal(what, err);
    }
    return this.latched;
  }

  /**
   * The one rule for an error thrown by a store's mutation: a caller error (bad input, refused
   * before anything was written) passes through unchanged and leaves the store usable; anything
   * else may have left the store half-written, so it latches and the latched error is returned.
   * `alsoLatch` names caller codes that latch all the same (a persister treats CLOSED raised by a
   * log closed underneath a write in progress as a failed write).
   */
  passCallerErrors(err: unknown, what: string, alsoLatch: readonly ErrorCode[] = []): CairnError {
    if (err instanceof CairnError && err.kind === 'caller' && !alsoLatch.includes(err.code)) return err;
    return this.latch(err, what);
  }

  check(): void {
    if (this.latched !== undefined) throw this.latched;
  }
}
