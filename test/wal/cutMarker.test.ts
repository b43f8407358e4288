/**
 * truncateBack records the cut in the WAL meta (CUT) before it cuts. Until the cut's fsync, a power
 * cut may keep any subset of the cut pages: zeroed frames in front of stale but intact ones whose
 * `syncedNext` would otherwise read as proof of damage to synced data (found by the page-subset WAL
 * sweep, `CAIRN_SEED=729984889`, [wal-large-16k-mixed] crash right after the truncate).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CairnError } from '../../src/lib/errors.ts';
import { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { decodeMeta, encodeMeta, openWalMeta } from '../../src/wal/meta.ts';
import { damageToSyncedData } from '../../src/wal/recovery.ts';
import type { IntactFramesAfter } from '../../src/wal/segmentFile.ts';
import { Wal } from '../../src/wal/wal.ts';

/**
 * A WAL on a simulated disk with 10 synced records, and the CUT index the meta on disk holds at the
 * moment each segment is truncated (each cut).
 */
async function walWatchingCuts(seed: number) {
  const fs = new SimulatedFileSystem({ seed });
  const cutsSeen: Array<number | undefined> = [];
  const open = fs.open.bind(fs);
  fs.open = (...args: Parameters<typeof open>) => {
    const h = open(...args);
    if (!String(args[0]).endsWith('.wal')) return h;
    const truncate = h.truncate.bind(h);
    h.truncate = (length: number) => {
      const meta = openWalMeta(fs, '/w', true);
      cutsSeen.push(meta.state?.cutNext);
      meta.close();
      truncate(length);
    };
    return h;
  };
  const wal = await Wal.open({ fs, dir: '/w', segmentBytes: 64 * 1024 });
  for (let i = 0; i < 10; i++) wal.append([new Uint8Array(100).fill(i)]);
  await wal.sync();
  return { fs, cutsSeen, wal };
}

test('meta: the cut index round-trips; CUT with CLEAN is refused', () => {
  const state = decodeMeta(encodeMeta({ firstIndex: 3, durableNext: 5, clean: undefined, cutNext: 9 }), 'm');
  assert.equal(state.cutNext, 9);
  assert.equal(state.clean, undefined);
  const plain = decodeMeta(encodeMeta({ firstIndex: 3, durableNext: 5, clean: undefined }), 'm');
  assert.equal(plain.cutNext, undefined);
  const bytes = encodeMeta({
    firstIndex: 3,
    durableNext: 5,
    clean: { tailEndOffset: 100, spareKept: false },
  });
  new DataView(bytes.buffer).setUint32(4, 1 | 4, true); // CLEAN | CUT
  assert.throws(
    () => decodeMeta(bytes, 'm'),
    (e: unknown) => e instanceof CairnError && e.code === 'WAL_CORRUPT',
  );
});

test('a frame at or past the cut proves nothing about damage at or past the cut', () => {
  const proofFrame = { index: 12, offset: 900, syncedNext: 11 };
  const later = { first: proofFrame, highest: proofFrame, count: 1 } as IntactFramesAfter;
  assert.match(damageToSyncedData(2, 8, later) ?? '', /fsynced/);
  assert.equal(damageToSyncedData(2, 8, later, 6), undefined, 'damage past the cut: a torn cut');
  assert.match(damageToSyncedData(2, 5, later, 6) ?? '', /fsynced/, 'a retained record stays proven');
});

test('truncateBack writes CUT before cutting and clears it once the cut is fsynced', async () => {
  const { fs, cutsSeen, wal } = await walWatchingCuts(5);
  await wal.truncateBack(4);
  assert.deepEqual(cutsSeen, [4], 'the meta said CUT at 4 before the truncate');
  const meta = openWalMeta(fs, '/w', true);
  assert.equal(meta.state?.cutNext, undefined, 'cleared once the cut was fsynced');
  meta.close();
  await wal.close();
});

test('a second truncateBack queued behind the first still cuts under CUT (the first must not clear it)', async () => {
  const { fs, cutsSeen, wal } = await walWatchingCuts(6);
  // Two rollbacks in a row, the second issued before the first's disk work ran.
  const first = wal.truncateBack(6);
  const second = wal.truncateBack(3);
  await Promise.all([first, second]);
  assert.deepEqual(cutsSeen, [6, 3], 'each cut ran while the meta on disk said CUT at or below it');
  const meta = openWalMeta(fs, '/w', true);
  assert.equal(meta.state?.cutNext, undefined, 'cleared once the last cut was fsynced');
  meta.close();
  await wal.close();
});

test('a truncateFront issued while a cut is pending keeps CUT in the meta it writes', async () => {
  const { fs, cutsSeen, wal } = await walWatchingCuts(7);
  const back = wal.truncateBack(6);
  const front = wal.truncateFront(2);
  await Promise.all([back, front]);
  assert.deepEqual(cutsSeen, [6], 'the cut ran while the meta on disk said CUT');
  const meta = openWalMeta(fs, '/w', true);
  assert.equal(meta.state?.cutNext, undefined, 'cleared once the cut was fsynced');
  assert.equal(meta.state?.firstIndex, 2);
  meta.close();
  await wal.close();
});

test('a CUT left by a crash inside a cut does not outlive the next writable open', async () => {
  // Recovery repairs the tail of a log whose cut was interrupted (anything past its end goes, and
  // the tail is fsynced), so no stale frame is left. A CUT still in the meta would keep disabling
  // the fsync proof for every record the new session writes at or above the cut index: damage to
  // records fsynced (and acknowledged) since would be cut as a torn tail instead of refused.
  const fs = new SimulatedFileSystem({ seed: 8 });
  const wal = await Wal.open({ fs, dir: '/w', segmentBytes: 64 * 1024 });
  for (let i = 0; i < 10; i++) wal.append([new Uint8Array(100).fill(i)]);
  await wal.sync();
  await wal.close();
  // The meta a power cut right after truncateBack(4)'s first meta write leaves (cut not yet run).
  const crashed = openWalMeta(fs, '/w', false);
  crashed.write({ firstIndex: 0, durableNext: 4, clean: undefined, cutNext: 4 });
  crashed.close();

  const reopened = await Wal.open({ fs, dir: '/w', segmentBytes: 64 * 1024 });
  // Records 10..14, each acknowledged (fsynced) before the next is written.
  for (let i = 10; i < 15; i++) {
    reopened.append([new Uint8Array(100).fill(i)]);
    await reopened.sync();
  }
  // Power cut now (everything was fsynced), then bit rot in record 11 (frames are 24 + 100 bytes).
  const image = fs.crash();
  image.flipBit('/w/00000000000000000000.wal', 32 + 11 * 124 + 30, 1);
  await assert.rejects(
    Wal.open({ fs: image, dir: '/w', segmentBytes: 64 * 1024 }),
    (e: unknown) => e instanceof CairnError && e.code === 'WAL_CORRUPT' && /fsynced/.test(e.message),
    'damage to acknowledged record 11 is refused, not cut as a torn tail',
  );
});
