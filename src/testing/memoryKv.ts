import type { KvBatch, KvEntry, KvRange, OrderedKv } from '../kv/orderedKv.ts';
import { asBuffer } from '../lib/bytes.ts';
import { CairnError } from '../lib/errors.ts';
import type { Rng } from '../lib/rng.ts';

type Op = { type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string };

/** How `MemoryKv.crashImage` picks the unsynced batches that survive a power cut. */
export type KvCrashModel =
  /**
   * Any subset, each batch whole (default). LevelDB writes each batch as one log record; its log
   * pages reach the disk in any order, and with `paranoid_checks` off recovery skips a damaged log
   * block and replays the records after it, so an earlier unsynced batch can be lost while a later
   * one survives.
   */
  | 'subset'
  /** An in-order prefix only (the model before 'subset'), for a test that needs it. */
  | 'prefix';

/**
 * In-memory `OrderedKv` for tests (never a product path). It models LevelDB's durability so the
 * simulated power-loss tests can cut power under it: a batch written with `sync: true` is durable
 * together with every batch before it; unsynced batches after the last synced one survive a power
 * cut as any subset (`crashImage(rng)`, model 'subset', the default) or, on request, as an in-order
 * prefix (model 'prefix'). A batch is never split.
 *
 * Process death without a power cut: `reopen()` is the next process after a kill -9 (everything
 * written visible, the unsynced batches still unsynced, so a later `crashImage` may drop them);
 * `reopenImage()` is a clean restart.
 *
 * Faults: `failNextWrites(n, code)` makes the next n batch writes reject with an errno-style error.
 */
export class MemoryKv implements OrderedKv {
  private readonly data = new Map<string, Uint8Array>();
  /** State as of the last synced batch. */
  private durable = new Map<string, Uint8Array>();
  /** Batches written without sync since the last synced one, oldest first. */
  private unsynced: Op[][] = [];
  private closed = false;
  private failures: { remaining: number; code: string } = { remaining: 0, code: 'EIO' };
  writes = 0;

  static fromEntries(entries: Iterable<[string, Uint8Array]>): MemoryKv {
    const kv = new MemoryKv();
    for (const [k, v] of entries) {
      kv.data.set(k, v);
      kv.durable.set(k, v);
    }
    return kv;
  }

  get(key: Uint8Array): Uint8Array | undefined {
    this.checkOpen();
    return this.data.get(hexKey(key));
  }

  async getMany(keys: readonly Uint8Array[]): Promise<(Uint8Array | undefined)[]> {
    return keys.map((k) => this.get(k));
  }

  batch(): KvBatch {
    return new MemoryBatch(this);
  }

  async range(range: KvRange): Promise<KvEntry[]> {
    this.checkOpen();
    const lo = range.gte ?? range.gt;
    const hi = range.lte ?? range.lt;
    const keys = [...this.data.keys()]
      .filter((k) => {
        if (lo !== undefined) {
          const c = compareHex(k, hexKey(lo));
          if (c < 0 || (c === 0 && range.gt !== undefined)) return false;
        }
        if (hi !== undefined) {
          const c = compareHex(k, hexKey(hi));
          if (c > 0 || (c === 0 && range.lt !== undefined)) return false;
        }
        return true;
      })
      .sort(compareHex);
    if (range.reverse) keys.reverse();
    return keys.slice(0, range.limit).map((k) => ({ key: unhex(k), value: this.data.get(k)! }));
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  failNextWrites(count: number, code = 'EIO'): void {
    this.failures = { remaining: count, code };
  }

  /**
   * What a process restarting after a power cut sees: the synced state plus the unsynced batches the
   * model keeps, applied in their original order. 'subset' keeps all of them a fifth of the time, an
   * in-order prefix another fifth (both are subsets too, but rare by chance for long runs), else each
   * batch independently with probability 1/2.
   */
  crashImage(rng: Rng, model: KvCrashModel = 'subset'): MemoryKv {
    return MemoryKv.fromEntries(this.survivorsOf(this.pickSurvivors(rng, model)));
  }

  /** Unsynced batches a crash may lose (written since the last synced batch). */
  get unsyncedBatchCount(): number {
    return this.unsynced.length;
  }

  /** The image that keeps exactly the unsynced batches at these indexes (0 = oldest unsynced). */
  crashImageKeeping(kept: Iterable<number>): MemoryKv {
    const indexes = [...kept];
    for (const i of indexes) {
      if (!Number.isSafeInteger(i) || i < 0 || i >= this.unsynced.length) {
        throw new RangeError(`crashImageKeeping: batch ${i} outside 0..${this.unsynced.length - 1}`);
      }
    }
    return MemoryKv.fromEntries(this.survivorsOf(new Set(indexes)));
  }

  private pickSurvivors(rng: Rng, model: KvCrashModel): Set<number> {
    const n = this.unsynced.length;
    const all = Array.from({ length: n }, (_, i) => i);
    if (model === 'prefix') return new Set(all.slice(0, rng.int(0, n + 1)));
    const r = rng.next();
    if (r < 0.2) return new Set(all);
    if (r < 0.4) return new Set(all.slice(0, rng.int(0, n + 1)));
    return new Set(all.filter(() => rng.bool(0.5)));
  }

  private survivorsOf(kept: ReadonlySet<number>): Map<string, Uint8Array> {
    const image = new Map(this.durable);
    this.unsynced.forEach((ops, i) => {
      if (kept.has(i)) apply(image, ops);
    });
    return image;
  }

  /** A clean restart (process exit after close): everything written is kept. */
  reopenImage(): MemoryKv {
    return MemoryKv.fromEntries(this.data);
  }

  /**
   * Reopen without a power cut: everything written is visible, but what was not synced is still
   * only in the OS page cache, so a later `crashImage` may still drop it.
   */
  reopen(): MemoryKv {
    const kv = new MemoryKv();
    for (const [k, v] of this.data) kv.data.set(k, v);
    kv.durable = new Map(this.durable);
    kv.unsynced = [...this.unsynced];
    return kv;
  }

  /** @internal */
  commit(ops: Op[], sync: boolean): void {
    this.checkOpen();
    this.writes++;
    if (this.failures.remaining > 0) {
      this.failures.remaining--;
      throw Object.assign(new Error(`injected ${this.failures.code} on key-value batch`), {
        code: this.failures.code,
      });
    }
    apply(this.data, ops);
    if (sync) {
      this.durable = new Map(this.data);
      this.unsynced = [];
    } else {
      this.unsynced.push(ops);
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new CairnError('CLOSED', 'memory key-value store is closed');
  }
}

class MemoryBatch implements KvBatch {
  private readonly ops: Op[] = [];
  private written = false;

  constructor(private readonly kv: MemoryKv) {}

  get length(): number {
    return this.ops.length;
  }

  put(key: Uint8Array, value: Uint8Array): KvBatch {
    this.ops.push({ type: 'put', key: hexKey(key), value: value.slice() });
    return this;
  }

  del(key: Uint8Array): KvBatch {
    this.ops.push({ type: 'del', key: hexKey(key) });
    return this;
  }

  async write(options: { sync: boolean }): Promise<void> {
    if (this.written) throw new CairnError('INVALID_ARGUMENT', 'a key-value batch can be written only once');
    this.written = true;
    this.kv.commit(this.ops, options.sync);
  }
}

function apply(map: Map<string, Uint8Array>, ops: readonly Op[]): void {
  for (const op of ops) {
    if (op.type === 'put') map.set(op.key, op.value);
    else map.delete(op.key);
  }
}

// Lowercase hex preserves bytewise order under plain string comparison.
function hexKey(key: Uint8Array): string {
  return asBuffer(key).toString('hex');
}

function unhex(key: string): Uint8Array {
  return new Uint8Array(Buffer.from(key, 'hex'));
}

function compareHex(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
