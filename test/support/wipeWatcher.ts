// A KV wrapper for the tests of an index wipe (a store emptying a KV of another layout a page at a
// time): until the first put (the wipe is over and the store writes again), it records every
// forward scan that starts at or before a key the wipe already deleted. On LevelDB such a scan
// walks every tombstone the earlier pages left, so a wipe that restarts each page from the first
// key grows with the square of the KV's size.
import type { KvEntry, KvRange } from '../../src/kv/orderedKv.ts';
import { ObservedKv } from './observedKv.ts';

function compare(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(
    Buffer.from(a.buffer, a.byteOffset, a.byteLength),
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  );
}

export class WipeWatcher extends ObservedKv {
  wiping = true;
  deletes = 0;
  scans = 0;
  rescans: string[] = [];
  private maxDeleted: Uint8Array | undefined;

  protected override onPut(): void {
    this.wiping = false;
  }

  protected override onDel(key: Uint8Array): void {
    if (!this.wiping) return;
    this.deletes++;
    if (this.maxDeleted === undefined || compare(key, this.maxDeleted) > 0) this.maxDeleted = key.slice();
  }

  override range(r: KvRange): Promise<KvEntry[]> {
    if (this.wiping && !r.reverse) {
      this.scans++;
      const max = this.maxDeleted;
      if (max !== undefined) {
        const startsAfter =
          r.gt !== undefined ? compare(r.gt, max) >= 0 : r.gte !== undefined && compare(r.gte, max) > 0;
        if (!startsAfter) {
          this.rescans.push(
            `scan ${this.scans} starts at or before deleted key ${Buffer.from(max).toString('hex')}`,
          );
        }
      }
    }
    return this.inner.range(r);
  }
}
