// Steady-state pruning on the record layer: each prune sweeps the index entries below the new
// floor (minus the tombstone window). Before the per-kind sweep cursor every sweep chunk scanned
// its kind from number 0, which on LevelDB walks every tombstone the earlier sweeps left until
// compaction drops them: a node pruning a little at a time paid, per prune, for all prunes before
// it. This test checks that no sweep scan starts at or before a key a sweep already deleted (fails
// without the cursor), that a record put below the cursor is still swept, and that every entry
// below the sweep limit is gone.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { KvEntry, KvRange } from '../../src/kv/orderedKv.ts';
import { RecordStore } from '../../src/records/recordStore.ts';
import { MemoryKv } from '../../src/testing/memoryKv.ts';
import { MemoryLog } from '../blocks/support/memoryLog.ts';
import { ObservedKv } from '../support/observedKv.ts';

const KEY_RECORD = 0x52;
const POINT = 1;
const RANGED = 2;

const hex = (k: Uint8Array) => Buffer.from(k).toString('hex');

/** Records forward scans of a kind's record keys that start at or before a key already deleted. */
class SweepWatcher extends ObservedKv<MemoryKv> {
  /** Per kind: the highest record key deleted and not since re-put below. */
  private readonly maxDeleted = new Map<number, string>();
  rescans: string[] = [];
  scans = 0;
  protected override onPut(key: Uint8Array): void {
    // A key written below the deleted frontier makes a scan from lower down legitimate again.
    const max = key[0] === KEY_RECORD ? this.maxDeleted.get(key[1]!) : undefined;
    if (max !== undefined && hex(key) <= max) this.maxDeleted.delete(key[1]!);
  }
  protected override onDel(key: Uint8Array): void {
    if (key[0] !== KEY_RECORD) return;
    const max = this.maxDeleted.get(key[1]!);
    if (max === undefined || hex(key) > max) this.maxDeleted.set(key[1]!, hex(key));
  }
  override range(r: KvRange): Promise<KvEntry[]> {
    const lt = r.lt;
    // A sweep scan: forward, bounded above within one kind's record keys.
    if (!r.reverse && r.gte?.[0] === KEY_RECORD && lt?.[0] === KEY_RECORD && lt[1] === r.gte[1]) {
      this.scans++;
      const max = this.maxDeleted.get(r.gte[1]!);
      if (max !== undefined && hex(r.gte) <= max) {
        this.rescans.push(`scan ${this.scans} of kind ${r.gte[1]} starts at ${hex(r.gte)} <= deleted ${max}`);
      }
    }
    return this.inner.range(r);
  }
}

test('steady-state prunes: each sweep starts after what earlier sweeps deleted; a put below is still swept', async () => {
  const kv = new SweepWatcher(new MemoryKv());
  const records = await RecordStore.open({
    log: new MemoryLog(),
    kv,
    name: 'sweep',
    rangedKinds: [RANGED],
    pointKinds: [POINT],
    hashTombstoneNumbers: 100,
  });
  try {
    let next = 0;
    const appendUpTo = (end: number) => {
      for (; next < end; next++) {
        records.append(POINT, next, next + 1, Uint8Array.of(next & 0xff));
        if (next % 4 === 0) records.append(RANGED, next, next + 4, Uint8Array.of(1));
      }
    };
    appendUpTo(6_000);
    await records.flush();
    // 20 prunes of 250 numbers each, with appends between them (the chunk is 2,048 keys, so the
    // first sweeps take several chunks).
    for (let floor = 500; floor <= 5_250; floor += 250) {
      appendUpTo(floor + 6_000);
      await records.flush();
      await records.pruneBefore(floor);
      await records.sweepIdle();
      if (floor === 2_000) {
        // A record put below every cursor (puts are not refused below the floor): the next sweep
        // must still find it.
        records.append(POINT, 7, 8, Uint8Array.of(7));
        await records.flush();
      }
    }
    assert.ok(kv.scans >= 20, `${kv.scans} sweep scans`);
    assert.deepEqual(kv.rescans, [], 'no sweep scan walks over keys an earlier sweep deleted');
    const limit = 5_250 - 100;
    const left = await kv.range({
      gte: Uint8Array.of(KEY_RECORD),
      lt: Uint8Array.of(KEY_RECORD + 1),
      limit: 1_000_000,
    });
    const below = left.filter((e) => Buffer.from(e.key).readBigUInt64BE(2) < BigInt(limit));
    assert.deepEqual(
      below.map((e) => hex(e.key)),
      [],
      'every index entry below the sweep limit is gone, the one put below the cursor included',
    );
    assert.equal(records.get(POINT, 7).status, 'pruned');
    assert.equal(records.get(POINT, 5_300).status, 'found');
  } finally {
    await records.close();
  }
});
