/**
 * Issue #9 item 9: reset and truncateFront do their disk work off the main thread (meta fsyncs on
 * the thread pool, segment zero-fill in slices, unlinks on the pool), and reset re-arms the spare.
 */
import assert from 'node:assert/strict';
import * as nodeFs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import { SPARE_SEGMENT_NAME } from '../../src/wal/spareSegment.ts';
import { Wal } from '../../src/wal/wal.ts';
import { payloadFor, tempDir, WrappingFileSystem } from './helpers.ts';

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir()));
afterEach(() => cleanup());

/** Waits until a spare file of full size exists, then for its last fsync on the thread pool. */
async function spareReady(segmentBytes: number): Promise<void> {
  const spare = path.join(dir, SPARE_SEGMENT_NAME);
  const full = (): boolean => nodeFs.existsSync(spare) && nodeFs.statSync(spare).size === segmentBytes;
  for (let i = 0; i < 400 && !full(); i++) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 100));
}

test('item 9: truncateFront runs no fsync on the main thread', async () => {
  const fs = new WrappingFileSystem();
  const wal = await Wal.open({ fs, dir, segmentBytes: 64 * 1024 });
  for (let i = 0; i < 10; i++) wal.append([payloadFor(i, 100)]);
  await wal.sync();
  const mainThreadSyncs = fs.count('sync');
  await wal.truncateFront(5);
  assert.equal(fs.count('sync'), mainThreadSyncs, 'truncateFront fsynced on the main thread');
  assert.equal(wal.firstIndex, 5);
  await wal.close();
  const again = await Wal.open({ fs, dir, segmentBytes: 64 * 1024 });
  assert.equal(again.firstIndex, 5, 'the truncation is durable');
  await again.close();
});

test('item 9: reset neither zero-fills nor fsyncs on the main thread, and keeps appends in order', async () => {
  const fs = new WrappingFileSystem();
  // at-half-full spare mode, nearly empty segment: no spare is ready when reset needs a segment.
  const segmentBytes = 4 * 1024 * 1024;
  const wal = await Wal.open({ fs, dir, segmentBytes, syncOffThread: true });
  for (let i = 0; i < 10; i++) wal.append([payloadFor(i, 100)]);
  await wal.sync();
  const mainThreadSyncs = fs.count('sync');
  const allocatesBefore = fs.count('allocate');
  const reset = wal.reset(1000);
  assert.equal(fs.count('allocate'), allocatesBefore, 'reset zero-filled synchronously inside its call');
  assert.equal(wal.nextIndex, 1000, 'the range changes at once');
  // Appended while the reset's disk work runs: written after it, in order.
  wal.append([payloadFor(1000, 100)]);
  const synced = wal.sync();
  await reset;
  await synced;
  assert.equal(fs.count('sync'), mainThreadSyncs, 'reset fsynced on the main thread');
  await wal.close();
  const again = await Wal.open({ fs, dir, segmentBytes });
  assert.equal(again.firstIndex, 1000);
  assert.equal(again.nextIndex, 1001);
  assert.deepEqual(again.read(1000), payloadFor(1000, 100));
  await again.close();
});

test("item 9: after a reset the 'always-ready' spare is prepared again", async () => {
  const fs = new WrappingFileSystem();
  const segmentBytes = 256 * 1024;
  const wal = await Wal.open({ fs, dir, segmentBytes, spareSegment: 'always-ready' });
  await spareReady(segmentBytes);
  wal.append([payloadFor(0, 100)]);
  await wal.sync();
  const renamesBefore = fs.count('rename');
  await wal.reset(500);
  assert.equal(
    fs.count('rename'),
    renamesBefore + 1,
    'precondition: the reset took the spare as its segment',
  );
  await spareReady(segmentBytes);
  assert.ok(
    nodeFs.existsSync(path.join(dir, SPARE_SEGMENT_NAME)),
    'the spare was not re-armed after the reset',
  );
  await wal.close();
});
