import { ForwardingKv } from '../../src/kv/forwardingKv.ts';
import type { KvBatch, OrderedKv } from '../../src/kv/orderedKv.ts';

/**
 * A pass-through KV whose batches report each put and delete (`onPut`, `onDel`) and are written
 * through `writeBatch`: the KV test doubles (recorders, gates, fault injectors) override only the
 * hook they need, so the batch wrapper is written once.
 */
export class ObservedKv<K extends OrderedKv = OrderedKv> extends ForwardingKv<K> {
  protected onPut(_key: Uint8Array, _value: Uint8Array): void {}
  protected onDel(_key: Uint8Array): void {}
  /** Writes `inner` (the wrapped store's own batch) on behalf of the batch handed out. */
  protected writeBatch(inner: KvBatch, options: { sync: boolean }): Promise<void> {
    return inner.write(options);
  }

  override batch(): KvBatch {
    const inner = this.inner.batch();
    const self = this;
    const b: KvBatch = {
      put(key, value) {
        self.onPut(key, value);
        inner.put(key, value);
        return b;
      },
      del(key) {
        self.onDel(key);
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
