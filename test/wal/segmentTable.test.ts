/** Segment bookkeeping on its own: lookup, front/back truncation, the read-handle cache. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { READ_HANDLE_CACHE, type SegmentState, SegmentTable } from '../../src/wal/segmentTable.ts';

function seg(firstIndex: number, records: number): SegmentState {
  const offsets = Array.from({ length: records }, (_, i) => 32 + i * 20);
  return {
    file: `/w/${firstIndex}.wal`,
    firstIndex,
    offsets,
    endOffset: 32 + records * 20,
    format: 3,
    salt: 1,
  };
}

test('segmentFor finds the segment holding each index; frameRange gives its bytes', () => {
  const table = new SegmentTable(new SimulatedFileSystem({ seed: 1 }), [seg(0, 3), seg(3, 2), seg(5, 4)]);
  const owners = Array.from({ length: 9 }, (_, i) => table.segmentFor(i).firstIndex);
  assert.deepEqual(owners, [0, 0, 0, 3, 3, 5, 5, 5, 5]);
  assert.deepEqual(table.frameRange(table.segmentFor(4), 4), { offset: 52, end: 72 });
  assert.deepEqual(table.frameRange(table.segmentFor(8), 8), { offset: 92, end: 112 });
});

test('a table whose segments do not continue each other is a bug (invariant)', () => {
  assert.throws(
    () => new SegmentTable(new SimulatedFileSystem({ seed: 1 }), [seg(0, 3), seg(4, 1)]),
    /invariant/,
  );
});

test('dropBelow frees whole segments only and always keeps the tail; popAbove mirrors it', () => {
  const table = new SegmentTable(new SimulatedFileSystem({ seed: 1 }), [seg(0, 3), seg(3, 2), seg(5, 4)]);
  assert.equal(table.frontTruncationFreesSegment(2), false);
  assert.deepEqual(table.dropBelow(2), []);
  assert.equal(table.frontTruncationFreesSegment(3), true);
  assert.deepEqual(
    table.dropBelow(100).map((s) => s.firstIndex),
    [0, 3],
  );
  assert.equal(table.length, 1);
  const other = new SegmentTable(new SimulatedFileSystem({ seed: 1 }), [seg(0, 3), seg(3, 2), seg(5, 4)]);
  assert.deepEqual(
    other.popAbove(3).map((s) => s.firstIndex),
    [5],
  );
  assert.equal(other.tail.firstIndex, 3);
});

test('pushTail refuses a segment that does not continue the tail', () => {
  const table = new SegmentTable(new SimulatedFileSystem({ seed: 1 }), [seg(0, 3)]);
  assert.throws(() => table.pushTail(seg(4, 0)), /invariant/);
  table.pushTail(seg(3, 0));
  assert.equal(table.tail.firstIndex, 3);
});

test(`the read-handle cache keeps at most ${READ_HANDLE_CACHE} handles open, least recently used out first`, () => {
  const fs = new SimulatedFileSystem({ seed: 2 });
  fs.mkdir('/w');
  const segs: SegmentState[] = [];
  for (let i = 0; i < READ_HANDLE_CACHE + 3; i++) {
    const s = seg(i, 1);
    fs.writeFileBytes(s.file, new Uint8Array(52));
    segs.push(s);
  }
  const table = new SegmentTable(fs, segs);
  const first = table.readHandle(segs[0]!);
  for (let i = 1; i <= READ_HANDLE_CACHE; i++) table.readHandle(segs[i]!);
  // segs[0] was the least recently used: evicted (its handle closed).
  assert.throws(() => first.size());
  const again = table.readHandle(segs[1]!);
  assert.equal(again.size(), 52);
  table.closeReadHandles();
});
