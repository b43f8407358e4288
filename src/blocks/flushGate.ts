import type { GlobalRange } from '../domain/types.ts';
import { CairnError } from '../lib/errors.ts';
import type { BlockStore, WriteBatch } from './blockStore.ts';

/** QCs then blocks, validated as a whole before any of it is written (see `BlockStore.writeBatch`). */
export type PersistBatch = WriteBatch;

export interface ReconcileReport {
  blocks: GlobalRange;
  qcs: GlobalRange;
  /**
   * Finalized blocks the store has QCs for but not the blocks: [blocks.next, qcs.next). The node
   * refetches them from the consensus lane WALs. Undefined when nothing is missing.
   */
  missing: GlobalRange | undefined;
}

/**
 * The flush gate of the node on top of the block store: CommitQCs finalize global ranges;
 * each batch writes its QCs, then its blocks, then flushes once. The app vote for block n waits on
 * `waitFlushed(n)`, which resolves only after the fsync covering block n (and, by the log's write
 * order, its QC) returned. One batch at a time: a second `persist` waits for the first.
 */
export class FlushGate {
  private durableNext: number;
  private waiters: { number: number; resolve: () => void; reject: (err: unknown) => void }[] = [];
  private chain: Promise<void> = Promise.resolve();
  private failure: unknown;
  private closedError: CairnError | undefined;
  /** Bound on concurrently waiting votes; beyond it `waitFlushed` rejects with BACKPRESSURE. */
  readonly maxWaiters: number;

  constructor(
    readonly store: BlockStore,
    options: { maxWaiters?: number } = {},
  ) {
    // Everything in the store when the layer starts was recovered from disk, hence durable.
    this.durableNext = store.ranges().blocks.next;
    this.maxWaiters = options.maxWaiters ?? 100_000;
  }

  /** Blocks below this number are durable together with their QCs. */
  get durableBlockNext(): number {
    return this.durableNext;
  }

  /**
   * Startup reconciliation. The single value log already guarantees that no block survives
   * without its QC (write order), and opening the store refuses a state that breaks it; what is
   * left is the tail of finalized blocks whose bodies were not yet durable.
   */
  reconcile(): ReconcileReport {
    const r = this.store.ranges();
    const missing = r.blocks.next < r.qcs.next ? { first: r.blocks.next, next: r.qcs.next } : undefined;
    return { blocks: r.blocks, qcs: r.qcs, missing };
  }

  /** Writes QCs, then blocks, then flushes once. Resolves when the batch is durable. */
  persist(batch: PersistBatch): Promise<void> {
    if (this.closedError !== undefined) return Promise.reject(this.closedError);
    const run = this.chain.then(async () => {
      if (this.failure !== undefined) throw this.failure;
      if (this.closedError !== undefined) throw this.closedError;
      let covered: number;
      try {
        // All or nothing: a refused entry anywhere in the batch leaves the store untouched.
        this.store.writeBatch(batch);
        // What the flush covers is fixed now, before the await: the store is shared, and a block
        // another writer appends while the fsync runs is not durable when it returns.
        covered = this.store.ranges().written.blocksNext;
        await this.store.flush();
      } catch (err) {
        // A rejected write is the caller's bug and leaves the store usable; a failed flush latched
        // the store, so every waiter learns about it.
        if (err instanceof CairnError && err.kind === 'fatal') this.failAll(err);
        throw err;
      }
      this.advance(covered);
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Resolves once block `n` and its QC are durable. */
  waitFlushed(n: number): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.closedError !== undefined) return Promise.reject(this.closedError);
    if (n < this.durableNext) return Promise.resolve();
    if (this.waiters.length >= this.maxWaiters) {
      return Promise.reject(
        new CairnError(
          'BACKPRESSURE',
          `${this.waiters.length} votes already wait for durability (limit ${this.maxWaiters})`,
        ),
      );
    }
    return new Promise((resolve, reject) => this.waiters.push({ number: n, resolve, reject }));
  }

  /** Prunes below the app's retain height (0 = keep everything). Returns the floor in force. */
  pruneToRetainHeight(retainHeight: number): Promise<number> {
    if (this.closedError !== undefined) return Promise.reject(this.closedError);
    if (retainHeight <= 0) return Promise.resolve(this.store.floor);
    const run = this.chain.then(async () => {
      try {
        return await this.store.pruneBefore(retainHeight);
      } catch (err) {
        // A failed floor write or segment drop latched the store: no flush can ever succeed, so
        // waiting votes must learn it now rather than wait for a batch that may never come.
        if (err instanceof CairnError && err.kind === 'fatal') this.failAll(err);
        throw err;
      }
    });
    this.chain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /**
   * Stops the layer: lets the batch in flight finish, then rejects every waiting vote with CLOSED
   * (their blocks will not be flushed by this layer). Later calls reject with CLOSED. Does not
   * close the store, which its owner closes. Idempotent.
   */
  close(): Promise<void> {
    this.closedError ??= new CairnError('CLOSED', 'the flush gate is closed');
    const err = this.closedError;
    return this.chain.then(() => {
      for (const w of this.waiters) w.reject(this.failure ?? err);
      this.waiters = [];
    });
  }

  private advance(next: number): void {
    if (next <= this.durableNext) return;
    this.durableNext = next;
    const still: typeof this.waiters = [];
    for (const w of this.waiters) {
      if (w.number < next) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }

  private failAll(err: unknown): void {
    this.failure ??= err;
    for (const w of this.waiters) w.reject(err);
    this.waiters = [];
  }
}
