import type { FlushGate, PersistBatch } from '../blocks/flushGate.ts';
import type { ConsensusPersistence } from '../consensus/persistence.ts';
import { globalRangeOf } from '../domain/committee.ts';
import type { Block, BlockHeader, CommitQC, FullCommitQC } from '../domain/types.ts';
import { CairnError } from '../lib/errors.ts';
import { reraiseApart } from '../lib/reraise.ts';

/** Roads written to the block store per flush at most: bounds a batch's memory and latency. */
export const MAX_ROADS_PER_FLUSH = 32;

export type RoadFlushedListener = (qc: CommitQC) => void;

/**
 * The finalizer: every CommitQC that consensus persistence publishes (it is durable there)
 * becomes a FullCommitQC plus its blocks in the block store — QCs first, then blocks, one flush per
 * batch. Listeners hear about a road only after that flush, which is what gates the app vote.
 *
 * The blocks come from the consensus layer's in-memory lane queues. Consensus prunes them (and its
 * WALs) only up to the lower of its prune anchor and the newest road flushed here (the finalizer
 * reports each flush with `setFinalizedRoads`; at open the node passes where the block store ends),
 * so a road's blocks are still there when the finalizer needs them even if an AppQC arrived first —
 * including after a crash, when `catchUp` rewrites the tail the block store lost from the lane WALs.
 */
export class Finalizer {
  private readonly queue: CommitQC[] = [];
  private readonly listeners = new Set<RoadFlushedListener>();
  private nextRoad = 0;
  private flushedRoadNext = 0;
  private wake: (() => void) | undefined;
  private unsubscribe: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private stopped = false;
  private failure: Error | undefined;

  constructor(
    private readonly consensus: ConsensusPersistence,
    private readonly flushGate: FlushGate,
    private readonly onFatal?: (err: Error) => void,
  ) {}

  /** Roads below this are durable in the block store. */
  get flushedRoads(): number {
    return this.flushedRoadNext;
  }

  /**
   * Startup: writes every durable CommitQC (and its blocks) that the block store is missing.
   * Returns how many blocks it wrote. A block store that ends below what consensus still holds,
   * with a hole in between, cannot be repaired from local data: DATA_LOSS.
   */
  async catchUp(): Promise<number> {
    const stored = this.flushGate.store.ranges();
    // The store's first end: a store starts at its prune floor (0 for one never pruned). A store
    // whose first block sits above its floor never received blocks [floor, first).
    if (stored.blocks.first < stored.blocks.next && stored.blocks.first > stored.floor) {
      throw new CairnError(
        'DATA_LOSS',
        `block store holds blocks [${stored.blocks.first}, ${stored.blocks.next}) but its prune floor is ` +
          `${stored.floor}: blocks [${stored.floor}, ${stored.blocks.first}) were never written; restore the ` +
          'block store from a backup or re-sync it',
        { details: { storeFirst: stored.blocks.first, floor: stored.floor } },
      );
    }
    const last = this.consensus.lastCommitQC();
    if (!last) return 0;
    let road = last.roadIndex;
    while (road > 0 && this.consensus.commitQC(road - 1) !== undefined) road--;
    const todo: CommitQC[] = [];
    for (let r = road; r <= last.roadIndex; r++) {
      const qc = this.consensus.commitQC(r)!;
      const range = globalRangeOf(qc);
      if (range.next <= stored.blocks.next && range.next <= stored.qcs.next) {
        this.flushedRoadNext = r + 1;
        continue;
      }
      // The store's last end: the first road to write must start at or below where the store ends
      // (an empty, never-pruned store ends at 0: its first road is explicit, never "anywhere").
      if (todo.length === 0 && range.first > stored.blocks.next) {
        throw new CairnError(
          'DATA_LOSS',
          `block store ends at global block ${stored.blocks.next}, but the oldest CommitQC consensus still ` +
            `holds (road ${r}) starts at ${range.first}: blocks [${stored.blocks.next}, ${range.first}) are ` +
            'gone from both stores; restore the block store from a backup or re-sync it',
          { details: { storeNext: stored.blocks.next, road: r, globalFirst: range.first } },
        );
      }
      todo.push(qc);
    }
    this.nextRoad = last.roadIndex + 1;
    let written = 0;
    for (let i = 0; i < todo.length; i += MAX_ROADS_PER_FLUSH) {
      const slice = todo.slice(i, i + MAX_ROADS_PER_FLUSH);
      const batch = this.buildBatch(slice, stored.blocks.next);
      await this.flushGate.persist(batch);
      written += batch.blocks.length;
      this.flushedRoadNext = slice[slice.length - 1]!.roadIndex + 1;
      this.consensus.setFinalizedRoads(this.flushedRoadNext);
    }
    if (todo.length === 0) this.flushedRoadNext = this.nextRoad;
    this.consensus.setFinalizedRoads(this.flushedRoadNext);
    return written;
  }

  /** Subscribes to published CommitQCs and starts writing them to the block store. */
  start(): void {
    if (this.loop) return;
    // One CommitQC fsync may cover several roads and announces only the newest: every road from
    // the last one queued up to it is taken from consensus (it holds them until they are flushed
    // here: its prune anchor never passes this finalizer), so no road is ever skipped.
    this.unsubscribe = this.consensus.subscribeCommitQC((newest) => {
      for (let r = this.nextRoad; r <= newest.roadIndex; r++) {
        const qc = r === newest.roadIndex ? newest : this.consensus.commitQC(r);
        if (!qc) {
          this.failWith(
            new CairnError(
              'DATA_LOSS',
              `CommitQC ${r} is durable but consensus no longer holds it; the finalizer cannot write road ${r}`,
              { details: { road: r } },
            ),
          );
          return;
        }
        this.queue.push(qc);
      }
      if (newest.roadIndex >= this.nextRoad) this.nextRoad = newest.roadIndex + 1;
      this.wake?.();
    });
    this.loop = this.run();
  }

  /** Called after each road is durable in the block store, in road order. */
  onRoadFlushed(listener: RoadFlushedListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    this.wake?.();
    await this.loop;
  }

  get error(): Error | undefined {
    return this.failure;
  }

  private failWith(err: unknown): void {
    if (this.failure) return;
    this.failure = err instanceof Error ? err : new Error(String(err));
    this.stopped = true;
    this.unsubscribe?.();
    this.wake?.();
    try {
      this.onFatal?.(this.failure);
    } catch (thrown) {
      reraiseApart(thrown);
    }
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      if (this.queue.length === 0) {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        this.wake = undefined;
        continue;
      }
      const roads = this.queue.splice(0, MAX_ROADS_PER_FLUSH);
      try {
        await this.flushGate.persist(this.buildBatch(roads, 0));
      } catch (err) {
        this.failWith(err);
        return;
      }
      // Consensus may now prune these roads (up to its anchor): they are in the block store.
      this.consensus.setFinalizedRoads(roads[roads.length - 1]!.roadIndex + 1);
      for (const qc of roads) {
        this.flushedRoadNext = qc.roadIndex + 1;
        for (const listener of this.listeners) listener(qc);
      }
    }
  }

  /** FullCommitQCs and blocks of `roads`, skipping blocks below `fromGlobal` (already stored). */
  private buildBatch(roads: readonly CommitQC[], fromGlobal: number): PersistBatch {
    const qcs: FullCommitQC[] = [];
    const blocks: { number: number; block: Block }[] = [];
    for (const qc of roads) {
      const headers: BlockHeader[] = [];
      let global = globalRangeOf(qc).first;
      for (const lr of qc.laneRanges) {
        for (let n = lr.first; n < lr.next; n++, global++) {
          const proposal = this.consensus.block(lr.lane, n);
          if (!proposal) {
            throw new CairnError(
              'DATA_LOSS',
              `CommitQC ${qc.roadIndex} finalizes lane ${lr.lane.slice(0, 12)} block ${n}, which consensus no longer holds`,
              { details: { road: qc.roadIndex, lane: lr.lane, blockNumber: n } },
            );
          }
          headers.push(proposal.block.header);
          if (global >= fromGlobal) blocks.push({ number: global, block: proposal.block });
        }
      }
      qcs.push({ qc, headers });
    }
    return { qcs, blocks };
  }
}
