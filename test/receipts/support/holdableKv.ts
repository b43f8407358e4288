import { ForwardingKv } from '../../../src/kv/forwardingKv.ts';
import type { KvBatch } from '../../../src/kv/orderedKv.ts';
import type { MemoryKv } from '../../../src/testing/memoryKv.ts';

/**
 * A MemoryKv whose batch writes go through `writeBatch`, which a test double overrides to hold,
 * count or fail them. `whileHeld()` parks a write until `release()` (call it only while `hold` is
 * set, so that a write not held takes no extra turn).
 */
export abstract class HoldableKv extends ForwardingKv<MemoryKv> {
  private held: (() => void)[] = [];
  hold = false;

  get heldCount(): number {
    return this.held.length;
  }

  release(): void {
    this.hold = false;
    const held = this.held;
    this.held = [];
    for (const go of held) go();
  }

  protected whileHeld(): Promise<void> {
    return new Promise<void>((go) => this.held.push(go));
  }

  /** Writes `inner` (the MemoryKv's own batch) on behalf of the batch handed out. */
  protected abstract writeBatch(inner: KvBatch, options: { sync: boolean }): Promise<void>;

  override batch(): KvBatch {
    const inner = this.inner.batch();
    const self = this;
    const b: KvBatch = {
      put(key, value) {
        inner.put(key, value);
        return b;
      },
      del(key) {
        inner.del(key);
        return b;
      },
      get length() {
        return inner.length;
      },
      write(options) {
        return self.writeBatch(inner, options);
      },
    };
    return b;
  }
}
