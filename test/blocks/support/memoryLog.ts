import { CairnError } from '../../../src/lib/errors.ts';
import type { SegmentInfo, VerifyReport, WalRecord, WriteAheadLog } from '../../../src/wal/types.ts';

/**
 * In-memory WriteAheadLog for fast unit tests of the layers above the log (a test double, not a
 * product path). `crashImage()` keeps the synced prefix plus a random-length unsynced prefix.
 */
export class MemoryLog implements WriteAheadLog {
  private records: Uint8Array[] = [];
  private first = 0;
  private durable = 0;
  private closed = false;
  failSyncs = 0;

  get firstIndex(): number {
    return this.first;
  }
  get nextIndex(): number {
    return this.first + this.records.length;
  }
  get count(): number {
    return this.records.length;
  }
  get durableIndex(): number {
    return this.durable;
  }

  append(payloads: readonly Uint8Array[], expectedIndex?: number): number {
    this.check();
    if (expectedIndex !== undefined && expectedIndex !== this.nextIndex) {
      throw new CairnError('OUT_OF_ORDER', `expected ${expectedIndex}, next is ${this.nextIndex}`);
    }
    const at = this.nextIndex;
    for (const p of payloads) this.records.push(p.slice());
    return at;
  }

  async sync(): Promise<void> {
    this.check();
    if (this.failSyncs > 0) {
      this.failSyncs--;
      throw Object.assign(new Error('injected EIO on sync'), { code: 'EIO' });
    }
    this.durable = this.nextIndex;
  }

  read(index: number): Uint8Array {
    this.check();
    const r = this.records[index - this.first];
    if (r === undefined)
      throw new CairnError('OUT_OF_RANGE', `index ${index} outside [${this.first}, ${this.nextIndex})`);
    return r.slice();
  }

  *iterate(from = this.first, to = this.nextIndex): Iterable<WalRecord> {
    for (let i = Math.max(from, this.first); i < Math.min(to, this.nextIndex); i++) {
      yield { index: i, payload: this.records[i - this.first]!.slice() };
    }
  }

  async truncateFront(newFirst: number): Promise<void> {
    this.records = this.records.slice(newFirst - this.first);
    this.first = newFirst;
  }

  async truncateBack(newNext: number): Promise<void> {
    this.records = this.records.slice(0, newNext - this.first);
    this.durable = Math.min(this.durable, newNext);
  }

  async reset(nextIndex = this.nextIndex): Promise<void> {
    this.records = [];
    this.first = nextIndex;
  }

  segments(): SegmentInfo[] {
    return [];
  }

  /** One unbounded "segment": a front truncation never frees a file. */
  truncateFrontFreesSegment(): boolean {
    return false;
  }

  verify(): VerifyReport {
    return { segments: 1, records: this.count, bytes: 0, firstIndex: this.first, nextIndex: this.nextIndex };
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** Corrupts one bit of a stored record (tests of detection on read). */
  flipBit(index: number, byte: number, bit: number): void {
    const r = this.records[index - this.first]!;
    r[byte]! ^= 1 << bit;
  }

  /** A restarted copy: everything durable plus `extra` unsynced records. */
  crashImage(extra: number): MemoryLog {
    const copy = new MemoryLog();
    copy.first = this.first;
    const keep = Math.min(this.records.length, this.durable - this.first + extra);
    copy.records = this.records.slice(0, keep).map((r) => r.slice());
    copy.durable = copy.nextIndex;
    return copy;
  }

  private check(): void {
    if (this.closed) throw new CairnError('CLOSED', 'memory log closed');
  }
}
