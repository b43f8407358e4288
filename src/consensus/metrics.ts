/**
 * Counters and latency histograms of consensus persistence, cheap enough for the hot path
 * (an array increment per sample) and bounded in memory (fixed log-scale buckets).
 */

/**
 * Log-scale histogram of millisecond latencies: 128 buckets per doubling from 1 µs to ~70 s, so a
 * quantile is known within 0.55 % (8 per doubling, as before, left only ~9 %: a ratio of two p50s
 * could read 1.09 or 1.19 and nothing between). 26 doublings × 128 = 3,328 32-bit counts, 13 KiB
 * per histogram; a sample costs one log2 and one increment.
 */
export class LatencyHistogram {
  static readonly SUB_BUCKETS = 128;
  private static readonly MIN_MS = 0.001;
  private static readonly BUCKETS = 26 * LatencyHistogram.SUB_BUCKETS;
  private readonly counts = new Uint32Array(LatencyHistogram.BUCKETS);
  private total = 0;
  private sumMs = 0;
  private maxSeenMs = 0;

  record(ms: number): void {
    const v = Math.max(ms, 0);
    const ratio = v / LatencyHistogram.MIN_MS;
    const bucket =
      ratio <= 1
        ? 0
        : Math.min(LatencyHistogram.BUCKETS - 1, Math.ceil(Math.log2(ratio) * LatencyHistogram.SUB_BUCKETS));
    this.counts[bucket]!++;
    this.total++;
    this.sumMs += v;
    if (v > this.maxSeenMs) this.maxSeenMs = v;
  }

  get count(): number {
    return this.total;
  }
  get meanMs(): number {
    return this.total === 0 ? 0 : this.sumMs / this.total;
  }
  get maxMs(): number {
    return this.maxSeenMs;
  }

  /** Upper bound of the bucket holding quantile `q` (0..1); at most 0.55 % above the true value. */
  quantileMs(q: number): number {
    if (this.total === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.total));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen >= rank)
        return Math.min(this.maxSeenMs, LatencyHistogram.MIN_MS * 2 ** (i / LatencyHistogram.SUB_BUCKETS));
    }
    return this.maxSeenMs;
  }

  reset(): void {
    this.counts.fill(0);
    this.total = 0;
    this.sumMs = 0;
    this.maxSeenMs = 0;
  }

  summary(): { count: number; p50Ms: number; p99Ms: number; maxMs: number; meanMs: number } {
    return {
      count: this.total,
      p50Ms: this.quantileMs(0.5),
      p99Ms: this.quantileMs(0.99),
      maxMs: this.maxSeenMs,
      meanMs: this.meanMs,
    };
  }
}

/** Shared by the persisters, the loop and the in-flight state; read by the devnet and the bench. */
export class PersistenceMetrics {
  /** fsyncs issued by the lane logs and the CommitQC log (group commits, one per batch per log). */
  fsyncs = 0;
  /** Latency of each log sync (write already done; this is the fdatasync). */
  readonly fsyncLatency = new LatencyHistogram();
  /** Prune-anchor writes (one fsync each) and their latency. */
  anchorWrites = 0;
  readonly anchorWriteLatency = new LatencyHistogram();
  blocksPersisted = 0;
  blockBytesPersisted = 0;
  commitQCsPersisted = 0;
  /** Identical duplicates that were ignored (blocks and CommitQCs). */
  duplicatesIgnored = 0;
  /** Front truncations and resets issued (each costs an fsync of the log's metadata). */
  truncations = 0;
  resets = 0;
  /** Per-lane persist batches and their sizes. */
  laneBatches = 0;
  readonly laneBatchBlocks = new LatencyHistogram();
  /** Arrival (pushBlock) to voteable (durable), per block. */
  readonly arrivalToVoteable = new LatencyHistogram();
  /** CommitQC arrival to publication (durable). */
  readonly commitQCToPublished = new LatencyHistogram();
}
