import type { KvBatch, KvEntry, KvRange, OrderedKv } from './orderedKv.ts';

/**
 * An OrderedKv that passes every call to `inner`. Wrappers extend it and override only what they
 * add (a disposal at close, or in tests a gate or recorder around `batch`), so the pass-through
 * reads are written once.
 */
export class ForwardingKv<K extends OrderedKv = OrderedKv> implements OrderedKv {
  constructor(readonly inner: K) {}
  get(key: Uint8Array): Uint8Array | undefined {
    return this.inner.get(key);
  }
  getMany(keys: readonly Uint8Array[]): Promise<(Uint8Array | undefined)[]> {
    return this.inner.getMany(keys);
  }
  batch(): KvBatch {
    return this.inner.batch();
  }
  range(r: KvRange): Promise<KvEntry[]> {
    return this.inner.range(r);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
