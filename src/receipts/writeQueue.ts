import { CairnError } from '../lib/errors.ts';

/**
 * The single owner of the receipt store's write path: a bounded FIFO that runs one thing at a time.
 * Consecutive block writes are handed over as one group so they share one WAL fsync (group
 * commit); every other operation (rotation, pruning, close) runs alone, in arrival order. A full
 * queue refuses new work with BACKPRESSURE instead of buffering without bound.
 */
export interface QueuedWrite<W> {
  item: W;
  resolve: () => void;
  reject: (err: unknown) => void;
}

interface QueuedTask {
  run: () => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

type Entry<W> = { kind: 'write'; write: QueuedWrite<W> } | { kind: 'task'; task: QueuedTask };

export class WriteQueue<W> {
  private readonly entries: Entry<W>[] = [];
  private running = false;

  constructor(
    private readonly maxQueued: number,
    private readonly maxGroup: number,
    private readonly runGroup: (writes: QueuedWrite<W>[]) => Promise<void>,
    /**
     * Awaited before each task: `runGroup` may return while the tail of its group's work is still
     * in flight (the receipt store pipelines its hot-tier write with the next group), and a task
     * must see every earlier write finished.
     */
    private readonly settle: () => Promise<void> | undefined = () => undefined,
  ) {}

  get depth(): number {
    return this.entries.length;
  }

  write(item: W): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.entries.length >= this.maxQueued) {
        reject(
          new CairnError(
            'BACKPRESSURE',
            `receipt store write queue is full (${this.maxQueued} queued); retry later`,
            {
              details: { maxQueued: this.maxQueued },
            },
          ),
        );
        return;
      }
      this.entries.push({ kind: 'write', write: { item, resolve, reject } });
      this.kick();
    });
  }

  /** Runs `run` after everything queued before it; not subject to the bound (internal work). */
  task<T>(run: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.entries.push({ kind: 'task', task: { run, resolve: resolve as (v: unknown) => void, reject } });
      this.kick();
    });
  }

  private kick(): void {
    if (this.running) return;
    this.running = true;
    // Start on a later turn so callers that enqueue several writes in one turn form one group.
    setImmediate(() => void this.loop());
  }

  private async loop(): Promise<void> {
    try {
      while (this.entries.length > 0) {
        const head = this.entries[0]!;
        if (head.kind === 'task') {
          this.entries.shift();
          try {
            await this.settle();
            head.task.resolve(await head.task.run());
          } catch (err) {
            head.task.reject(err);
          }
          continue;
        }
        const group: QueuedWrite<W>[] = [];
        while (group.length < this.maxGroup && this.entries[0]?.kind === 'write') {
          group.push((this.entries.shift() as { write: QueuedWrite<W> }).write);
        }
        try {
          await this.runGroup(group);
        } catch (err) {
          for (const w of group) w.reject(err);
        }
      }
    } finally {
      this.running = false;
    }
  }
}
