/**
 * Reports fsyncs slower than a threshold through the log's warning callback, at most once per
 * interval (a sick disk makes every fsync slow: one warning a minute with counts, not thousands).
 * The report carries the slowest fsync and how many slow ones the interval saw.
 */
export class SlowFsyncMonitor {
  private lastReportMs = Number.NEGATIVE_INFINITY;
  private slowSinceReport = 0;
  private worstSinceReportMs = 0;

  constructor(
    private readonly thresholdMs: number,
    private readonly intervalMs: number,
    private readonly warn: (message: string, details: Record<string, unknown>) => void,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Records one fsync that took `elapsedMs` on `file`. */
  record(elapsedMs: number, file: string): void {
    if (elapsedMs < this.thresholdMs) return;
    this.slowSinceReport++;
    if (elapsedMs > this.worstSinceReportMs) this.worstSinceReportMs = elapsedMs;
    const now = this.now();
    if (now - this.lastReportMs < this.intervalMs) return;
    this.warn(
      `slow fsync: ${elapsedMs.toFixed(1)} ms (threshold ${this.thresholdMs} ms); ` +
        `${this.slowSinceReport} slow fsync(s) since the last report, the slowest ${this.worstSinceReportMs.toFixed(1)} ms`,
      {
        file,
        fsyncMs: elapsedMs,
        slowFsyncs: this.slowSinceReport,
        worstFsyncMs: this.worstSinceReportMs,
        thresholdMs: this.thresholdMs,
      },
    );
    this.lastReportMs = now;
    this.slowSinceReport = 0;
    this.worstSinceReportMs = 0;
  }
}
