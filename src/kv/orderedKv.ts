/**
 * A small ordered key-value interface over an embedded engine (LevelDB in production). Keys and
 * values are raw bytes; keys order bytewise, so callers encode numbers big-endian to get numeric
 * order.
 *
 * Durability model: mutations only happen through atomic batches. A batch written with
 * `sync: true` is durable when its promise resolves, together with every batch whose write completed
 * before it was written. A batch written with `sync: false` is visible at once but may be lost by a
 * power cut: the engine then recovers the batches up to the last synced one and ANY SUBSET of the
 * unsynced ones after it, never half a batch. LevelDB replays its log in order, but the log's pages
 * reach the disk in any order and, with `paranoid_checks` off, recovery skips a damaged block and
 * keeps replaying, so an earlier unsynced batch can be lost while a later one survives. Anything a
 * caller must rely on after a crash goes in a synced batch.
 *
 * The first half ("durable together with every batch before it") is the adapter's doing, not
 * LevelDB's: LevelDB 1.20 (MakeRoomForWrite) starts a new log file when the memtable fills and closes
 * the old one without fsync, then writes the old memtable to a synced table in the background; a
 * synced write in that window fsyncs only the new log. `ClassicLevelKv` therefore flushes the
 * memtable before a synced write resolves whenever the bytes that may have landed ahead of it since
 * its last flush could have filled one (see its `SYNC_FLUSH_FRACTION`). `MemoryKv` (the test engine)
 * models the same contract.
 *
 * Reads are synchronous on purpose: an awaited single get costs a thread-pool round trip (~14k/s
 * versus ~224k/s for LevelDB's getSync), which would dominate a hot read path.
 */
export interface KvRange {
  gt?: Uint8Array;
  gte?: Uint8Array;
  lt?: Uint8Array;
  lte?: Uint8Array;
  /** Maximum entries returned; required to keep every scan bounded. */
  limit: number;
  /** Descending key order. Default false. */
  reverse?: boolean;
}

export interface KvEntry {
  key: Uint8Array;
  value: Uint8Array;
}

export interface KvBatch {
  put(key: Uint8Array, value: Uint8Array): KvBatch;
  del(key: Uint8Array): KvBatch;
  /** Number of operations queued. */
  readonly length: number;
  /** Applies every operation atomically. With `sync`, durable on resolve. A batch is written once. */
  write(options: { sync: boolean }): Promise<void>;
}

export interface OrderedKv {
  /** Point read of the newest committed value (including unsynced batches that resolved). */
  get(key: Uint8Array): Uint8Array | undefined;
  getMany(keys: readonly Uint8Array[]): Promise<(Uint8Array | undefined)[]>;
  batch(): KvBatch;
  /** Up to `range.limit` entries in key order (or reverse), read from one consistent snapshot. */
  range(range: KvRange): Promise<KvEntry[]>;
  /** Idempotent. Waits for pending batches, then releases the engine (and its lock). */
  close(): Promise<void>;
}

/** Big-endian u64 encoding of a safe integer: byte order equals numeric order. */
export function u64Key(prefix: number, value: number): Uint8Array {
  const out = new Uint8Array(9);
  out[0] = prefix;
  new DataView(out.buffer).setBigUint64(1, BigInt(value), false);
  return out;
}

/** Reads a big-endian u64 at `offset` as a safe integer. */
export function readU64BE(bytes: Uint8Array, offset: number): number {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(offset, false);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`u64 ${v} exceeds the safe integer range`);
  return Number(v);
}

export function writeU64BE(bytes: Uint8Array, offset: number, value: number): void {
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).setBigUint64(offset, BigInt(value), false);
}
