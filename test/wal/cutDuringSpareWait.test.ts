/**
 * Regression (CI seed 785107237, wal-power-loss scenario 'wal-large-4k-truncations', scenario seed
 * 785115160, crash after mutation 565): a group-commit round wrote records 190..197 to a full tail
 * and then awaited the spare segment; meanwhile truncateBack(197) bumped the epoch and cleared
 * unsyncedWrites (its maintenance step fsyncs the cut tail later). The round resumed, read the NEW
 * epoch, saw nothing unsynced, and declared writtenNext (197) durable: syncs covering 190..196
 * resolved with no fsync of those bytes. The cut's meta (CUT 197, durable marker 190) was already
 * durable, so after a power cut that lost those pages recovery correctly returned [180, 190): the
 * writer had acknowledged records that were never fsynced. Fixed by taking the round's epoch before
 * the wait for the spare (wal.ts flushRound).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { Wal } from '../../src/wal/wal.ts';
import { POLICIES } from '../support/crashHarness.ts';
import {
  checkWalImage,
  newWalState,
  newWalTally,
  runWalWorkload,
  WAL_LARGE_TRUNCATIONS,
} from '../support/walModel.ts';

const SPEC = WAL_LARGE_TRUNCATIONS;
const SCENARIO_SEED = 785115160;
const CRASH_AFTER = 565;

test('WAL: a truncateBack while a round waits for the spare does not acknowledge unsynced records', async () => {
  const fs = new SimulatedFileSystem({ seed: SCENARIO_SEED });
  const state = newWalState(SCENARIO_SEED, SPEC);
  fs.crashAfter(CRASH_AFTER, POLICIES.random.policy);
  await assert.rejects(runWalWorkload(fs, state));
  assert.ok(fs.crashed, 'the workload reached the crash point');
  // The scenario's shape, so a change in the workload's call sequence shows up here rather than as
  // a silently passing test: the cut's meta is being mirrored, the cut itself has not run yet.
  assert.equal(state.oracle.first, 180);
  assert.equal(state.oracle.next, 197);
  const failures: string[] = [];
  const images = [
    ['drop-all', fs.crashImage(POLICIES.dropAll.policy)],
    ...Array.from({ length: 16 }, (_, k) => [
      `pages#${k}`,
      fs.crashImage({ ...POLICIES.pages.policy, seed: k }),
    ]),
  ] as const;
  for (const [name, image] of images) {
    try {
      await checkWalImage(image as SimulatedFileSystem, state, newWalTally());
    } catch (err) {
      failures.push(`${name}: ${String(err)}`);
    }
  }
  assert.deepEqual(failures, []);
});

test('WAL: a sync resolved across a truncateBack during the spare wait holds on a power cut at that moment', async () => {
  // The same race without the random workload: one round writes the records that fit a 4 KiB tail,
  // then waits for the spare; truncateBack cuts two written records meanwhile. The sync (clamped to
  // the cut) may resolve only once the records below the cut are fsynced: a power cut the instant
  // it resolves, losing every unsynced byte, must keep them all.
  const fs = new SimulatedFileSystem({ seed: 1 });
  const options = { fs, dir: '/w', segmentBytes: 4096, preallocate: true, syncOffThread: false } as const;
  const wal = await Wal.open(options);
  wal.append(Array.from({ length: 30 }, (_, i) => new Uint8Array(200).fill(i)));
  const internals = wal as unknown as { writtenNext: number; spare?: { inProgress?: Promise<void> } };
  const synced = wal.sync().then(() => fs.crashImage(POLICIES.dropAll.policy));
  for (let turn = 0; turn < 50 && !(internals.writtenNext > 0 && internals.spare?.inProgress); turn++) {
    await Promise.resolve();
  }
  assert.ok(internals.spare?.inProgress !== undefined, 'the round is waiting for the spare');
  assert.ok(internals.writtenNext > 2, 'the round wrote records before waiting');
  const cutAt = internals.writtenNext - 2;
  const cut = wal.truncateBack(cutAt);
  const image = await synced;
  await cut;
  await wal.close();
  const recovered = await Wal.open({ ...options, fs: image });
  assert.equal(recovered.firstIndex, 0);
  assert.ok(
    recovered.nextIndex >= cutAt,
    `acknowledged up to ${cutAt}, recovered only up to ${recovered.nextIndex}`,
  );
  for (let i = 0; i < cutAt; i++) assert.equal(recovered.read(i)[0], i, `record ${i}`);
  await recovered.close();
});
