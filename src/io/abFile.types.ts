/**
 * Contract of the A/B snapshot file: a small whole-state record (e.g. the prune anchor, a WAL's
 * first index) stored in two checksummed slots so that a torn write never destroys the last good
 * copy. Implemented in `abFile.ts`.
 */
export interface AbLoadResult {
  /** Payload of the newest valid slot, or undefined for a fresh (never written) store. */
  payload: Uint8Array | undefined;
  /** Sequence number of that payload (0 when fresh). */
  seq: number;
  /** Warnings raised while loading (one slot corrupt, torn first write treated as empty, ...). */
  warnings: string[];
}

export interface AbSnapshotFile {
  readonly seq: number;
  /**
   * Writes `payload` to the older slot with one fsync; durable on return. A failed write leaves
   * `seq` and the loaded winner unchanged (the next write retries the same slot); a failed fsync
   * latches the file: every later call throws that same error.
   */
  write(payload: Uint8Array): void;
  /**
   * The same steps as `write`, with the fsync on the thread pool; resolves once the payload is
   * durable, and only then advances `seq`. Calls must not overlap: a `write` or `writeAsync` made
   * while one is waiting for its fsync is refused with CONFLICT (nothing is queued or written).
   */
  writeAsync(payload: Uint8Array): Promise<void>;
  close(): void;
}
