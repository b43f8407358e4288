import { CairnError } from '../lib/errors.ts';
import type { SegmentInfo, VerifyReport, WalRecord, WriteAheadLog } from '../wal/types.ts';

/**
 * The WAL of the no-op mode (persistence disabled): it keeps the index bookkeeping of a real log
 * (first/next, expected-index checks, reset position) and discards every payload. The persisters
 * and the persist loop run unchanged on top of it, so tests and production share one control flow;
 * only the bytes never reach a disk. Reads fail: nothing is retained.
 */
export class NullWal implements WriteAheadLog {
  private first: number;
  private next: number;
  private closed = false;

  constructor(initialIndex = 0) {
    this.first = initialIndex;
    this.next = initialIndex;
  }

  get firstIndex(): number {
    return this.first;
  }
  get nextIndex(): number {
    return this.next;
  }
  get count(): number {
    return this.next - this.first;
  }
  get durableIndex(): number {
    return this.next;
  }

  private checkOpen(): void {
    if (this.closed) throw new CairnError('CLOSED', 'no-op log is closed');
  }

  append(payloads: readonly Uint8Array[], expectedIndex?: number): number {
    this.checkOpen();
    if (expectedIndex !== undefined && expectedIndex !== this.next) {
      throw new CairnError('OUT_OF_ORDER', `append expected index ${expectedIndex}, log is at ${this.next}`);
    }
    const at = this.next;
    this.next += payloads.length;
    return at;
  }

  async sync(): Promise<void> {
    this.checkOpen();
  }

  syncThen(done: (err?: unknown) => void): void {
    let failure: unknown;
    try {
      this.checkOpen();
    } catch (err) {
      failure = err;
    }
    queueMicrotask(() => (failure === undefined ? done() : done(failure)));
  }

  read(index: number): Uint8Array {
    throw new CairnError('NOT_FOUND', `no-op log retains no records (asked for ${index})`);
  }

  *iterate(): Iterable<WalRecord> {
    // Nothing retained.
  }

  async truncateFront(newFirst: number): Promise<void> {
    this.checkOpen();
    if (newFirst < this.first || newFirst > this.next) {
      throw new CairnError(
        'OUT_OF_RANGE',
        `truncateFront(${newFirst}) outside [${this.first}, ${this.next}]`,
      );
    }
    this.first = newFirst;
  }

  async truncateBack(newNext: number): Promise<void> {
    this.checkOpen();
    if (newNext < this.first || newNext > this.next) {
      throw new CairnError('OUT_OF_RANGE', `truncateBack(${newNext}) outside [${this.first}, ${this.next}]`);
    }
    this.next = newNext;
  }

  async reset(nextIndex = this.next): Promise<void> {
    this.checkOpen();
    if (nextIndex < this.next) {
      throw new CairnError('OUT_OF_RANGE', `reset(${nextIndex}) would move the log back from ${this.next}`);
    }
    this.first = nextIndex;
    this.next = nextIndex;
  }

  segments(): SegmentInfo[] {
    return [];
  }

  truncateFrontFreesSegment(): boolean {
    return false;
  }

  verify(): VerifyReport {
    return { segments: 0, records: 0, bytes: 0, firstIndex: this.first, nextIndex: this.next };
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
