/**
 * Power loss DURING recovery. Recovery is itself a writer: it deletes leftovers of interrupted
 * truncations, cuts and re-zeroes torn tails, creates the segment a reset or a fresh log needs,
 * writes the WAL meta, creates A/B slot files. A crash in the middle of any of that must leave a
 * disk that the next recovery opens, with every acknowledged record present, the log a prefix, and
 * the same result an uninterrupted recovery gives.
 *
 * How: run a seeded workload on the simulated file system and cut the power at a chosen call (the
 * first image). Count the I/O calls of an uninterrupted recovery of that image (R). Then for every
 * k in 1..R recover a fresh copy with the power cut after its k-th call, take the resulting images
 * under several crash policies, and check each one with the full checker (open, oracle, verify,
 * second recovery, appends after recovery survive another crash).
 *
 * Seeds print; CAIRN_SEED replays.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { openAbFile } from '../../src/io/abFile.ts';
import { mkdirDurable } from '../../src/io/fileSystem.ts';
import { bytesEqual } from '../../src/lib/bytes.ts';
import { describe as describeError } from '../../src/lib/errors.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { type CrashPolicy, DROP_ALL, SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { Wal } from '../../src/wal/wal.ts';
import { AB_DIR, AB_NAME, type AbState, newAbState, runAbWorkload } from '../support/abWorkload.ts';
import { isCrashError, POLICIES } from '../support/crashHarness.ts';
import {
  checkWalImage,
  newWalState,
  newWalTally,
  runWalWorkload,
  type WalState,
  type WalWorkloadSpec,
  walOptions,
} from '../support/walModel.ts';

type NamedPolicies = readonly { name: string; policy: CrashPolicy }[];
/** Crash policies of the second (in-recovery) power cut. */
const RECOVERY_POLICIES: NamedPolicies = [
  POLICIES.random,
  POLICIES.dropAll,
  POLICIES.keepAll,
  POLICIES.tornGarbled,
];
/** Crash policies of the first (mid-workload) power cut, picked per point. */
const WORKLOAD_POLICIES: readonly CrashPolicy[] = [
  POLICIES.random.policy,
  POLICIES.torn.policy,
  POLICIES.tornGarbled.policy,
  POLICIES.keepAll.policy,
  POLICIES.pagesZeroed.policy,
  POLICIES.pagesGarbled.policy,
];
interface RecoveryCrashCounts {
  /** First images whose recovery did any I/O. */
  imagesWithRepairs: number;
  /** (k, policy) states checked. */
  states: number;
  maxRecoveryCalls: number;
}

/**
 * Runs `workload` on a fresh file system with the power cut after mutation `point` and returns the
 * captured image (fully durable: copies of it are identical).
 */
async function imageAt<S>(
  seed: number,
  point: number,
  policy: CrashPolicy,
  start: () => S,
  workload: (fs: SimulatedFileSystem, s: S) => Promise<void>,
  make: (seed: number) => SimulatedFileSystem,
): Promise<{ image: SimulatedFileSystem; state: S }> {
  const fs = make(seed);
  const state = start();
  fs.crashAfter(point, policy);
  try {
    await workload(fs, state);
  } catch (err) {
    if (!fs.crashed) throw new Error(`workload failed before crash point ${point}: ${describeError(err)}`);
  }
  assert.ok(fs.crashed, `the workload never reached mutation ${point} (not deterministic for seed ${seed})`);
  return { image: fs.crashedImage(), state };
}

/** An exact copy of a fully durable image, with its own seed. */
function copyOf(image: SimulatedFileSystem, seed: number): SimulatedFileSystem {
  return image.crashImage({ ...DROP_ALL, seed });
}

/**
 * Crashes `recover` after each of its own I/O calls on copies of `image` and hands every resulting
 * image to `check`. Returns how many (k, policy) states were checked.
 */
async function crashEveryRecoveryCall(
  image: SimulatedFileSystem,
  seed: number,
  recover: (fs: SimulatedFileSystem) => Promise<void>,
  check: (afterCrash: SimulatedFileSystem, where: string) => Promise<void>,
  counts: RecoveryCrashCounts,
  recoveryPolicies: NamedPolicies = RECOVERY_POLICIES,
): Promise<void> {
  const probe = copyOf(image, seed);
  await recover(probe);
  const calls = probe.mutationCount;
  if (calls === 0) return;
  counts.imagesWithRepairs++;
  counts.maxRecoveryCalls = Math.max(counts.maxRecoveryCalls, calls);
  for (let k = 1; k <= calls; k++) {
    const fs = copyOf(image, seed);
    const [first, ...others] = recoveryPolicies;
    fs.crashAfter(k, first!.policy);
    try {
      await recover(fs);
    } catch (err) {
      if (!isCrashError(err)) {
        throw new Error(`recovery failed at call ${k}/${calls} without a crash: ${describeError(err)}`, {
          cause: err,
        });
      }
    }
    assert.ok(fs.crashed, `recovery made fewer than ${k} calls on a copy (expected ${calls})`);
    const images = [
      { name: first!.name, image: fs.crashedImage() },
      ...others.map((p, i) => ({
        name: p.name,
        image: fs.crashImage({ ...p.policy, seed: seed + k * 31 + i }),
      })),
    ];
    for (const { name, image: after } of images) {
      await check(after, `crash during recovery after call ${k}/${calls} (policy ${name})`);
      counts.states++;
    }
  }
}

// ------------------------------------------------------------------ WAL

const WAL_SPECS: WalWorkloadSpec[] = [
  {
    name: 'recovery-crash-wal-4k',
    steps: 70,
    segmentBytes: 4096,
    maxPayloadBytes: 350,
    syncOffThread: false,
    preallocate: true,
    truncateFrontP: 0.06,
    truncateBackP: 0.06,
    resetP: 0.04,
    reopenP: 0.03,
  },
  {
    name: 'recovery-crash-wal-pool-initial',
    steps: 70,
    segmentBytes: 4096,
    maxPayloadBytes: 600,
    syncOffThread: true,
    preallocate: true,
    initialIndex: 500,
    truncateFrontP: 0.05,
    truncateBackP: 0.05,
    resetP: 0.05,
    reopenP: 0.02,
  },
  {
    name: 'recovery-crash-wal-noprealloc',
    steps: 70,
    segmentBytes: 8192,
    maxPayloadBytes: 900,
    syncOffThread: true,
    preallocate: false,
    truncateFrontP: 0.05,
    truncateBackP: 0.05,
    resetP: 0.04,
    reopenP: 0.02,
  },
];

interface WalSnapshot {
  first: number;
  next: number;
  records: Uint8Array[];
}

async function recoverWal(fs: SimulatedFileSystem, spec: WalWorkloadSpec): Promise<WalSnapshot> {
  const wal = await Wal.open(walOptions(fs, spec));
  const records = [...wal.iterate()].map((r) => r.payload);
  const snapshot = { first: wal.firstIndex, next: wal.nextIndex, records };
  // Not closed: close() may sync, and only the recovery's own calls are being counted/crashed.
  return snapshot;
}

/** The state object for a check: a fresh oracle replayed to the same point (checks mutate the rng). */
function walStateAt(seed: number, spec: WalWorkloadSpec, state: WalState): WalState {
  return { ...state, rng: new Rng(seed ^ 0xabcd), spec };
}

async function walRecoveryCrash(
  recoveryPolicies: NamedPolicies,
  workloadPolicies: readonly CrashPolicy[],
  minStates: number,
): Promise<void> {
  const seed = seedFromEnv();
  console.log('seed', seed);
  const tally = newWalTally();
  const counts: RecoveryCrashCounts = { imagesWithRepairs: 0, states: 0, maxRecoveryCalls: 0 };
  const rng = new Rng(seed);
  for (const [i, spec] of WAL_SPECS.entries()) {
    const runSeed = (seed + i * 7919) >>> 0;
    const make = (s: number) => new SimulatedFileSystem({ seed: s, traceMutations: true });
    const probe = make(runSeed);
    await runWalWorkload(probe, newWalState(runSeed, spec));
    const mutations = probe.mutationCount;
    // Every mutation is a crash point of the workload: each image's recovery has different work.
    for (let point = 1; point <= mutations; point++) {
      const policy = workloadPolicies[rng.int(0, workloadPolicies.length)]!;
      const { image, state } = await imageAt(
        runSeed,
        point,
        { ...policy, seed: runSeed + point },
        () => newWalState(runSeed, spec),
        runWalWorkload,
        make,
      );
      const reference = await recoverWal(copyOf(image, 1), spec);
      await crashEveryRecoveryCall(
        image,
        runSeed + point,
        async (fs) => {
          await recoverWal(fs, spec);
        },
        async (after, where) => {
          const context = `${spec.name} workload crash after mutation ${point}/${mutations}, ${where}; replay: CAIRN_SEED=${seed}`;
          try {
            const got = await checkWalImage(after, walStateAt(runSeed, spec, state), tally);
            assert.equal(got.first, reference.first, 'first index differs from an uninterrupted recovery');
            assert.equal(got.next, reference.next, 'next index differs from an uninterrupted recovery');
            for (let r = 0; r < got.records.length; r++) {
              assert.ok(
                bytesEqual(got.records[r]!, reference.records[r]!),
                `record ${got.first + r} differs`,
              );
            }
          } catch (err) {
            throw new Error(`${context}: ${describeError(err)}`, { cause: err });
          }
        },
        counts,
        recoveryPolicies,
      );
    }
    console.log(`${spec.name}: ${mutations} workload crash points`, { ...counts });
  }
  console.log('WAL crash-during-recovery states', counts, tally);
  assert.ok(counts.states >= minStates, `only ${counts.states} crash-during-recovery states`);
  // The interesting repairs must have happened, or the sweep proves little.
  assert.ok(tally.tornTailWarnings > 0, 'no torn tail was repaired');
  assert.ok(counts.maxRecoveryCalls >= 5, 'no recovery did more than a trivial repair');
}

// Both power cuts under the page-subset model (F1, a lost unsynced page in front of surviving
// frames read as corruption, is fixed by frame format 2).
test('WAL: a crash at any I/O call of recovery leaves a log that recovers the same acknowledged prefix', async () => {
  await walRecoveryCrash(RECOVERY_POLICIES, WORKLOAD_POLICIES, 2000);
});

// ------------------------------------------------------------------ A/B file

const AB_WORKLOADS = [
  { name: 'recovery-crash-ab-small', writes: 30, reopenEvery: 0, maxPayloadBytes: 64 },
  { name: 'recovery-crash-ab-growing', writes: 30, reopenEvery: 4, maxPayloadBytes: 2500 },
];

/** What loading an A/B image gives, or the error. */
function loadAb(fs: SimulatedFileSystem): { seq: number; payload: Uint8Array | undefined } {
  mkdirDurable(fs, AB_DIR, path.posix);
  const { file, loaded } = openAbFile(fs, AB_DIR, AB_NAME);
  file.close();
  return { seq: loaded.seq, payload: loaded.payload };
}

test('A/B file: a crash while reopening and writing again never loses the last good copy', async () => {
  const seed = seedFromEnv();
  console.log('seed', seed);
  const counts: RecoveryCrashCounts = { imagesWithRepairs: 0, states: 0, maxRecoveryCalls: 0 };
  const rng = new Rng(seed ^ 0xab);
  const make = (s: number) => new SimulatedFileSystem({ seed: s });
  for (const [i, w] of AB_WORKLOADS.entries()) {
    const runSeed = (seed + i * 104729) >>> 0;
    const probe = make(runSeed);
    const probeState = newAbState(runSeed, w);
    await runAbWorkload(probe, probeState);
    const mutations = probe.mutationCount;
    for (let point = 1; point <= mutations; point++) {
      const policy = WORKLOAD_POLICIES[rng.int(0, WORKLOAD_POLICIES.length)]!;
      const { image, state } = await imageAt<AbState>(
        runSeed,
        point,
        { ...policy, seed: runSeed ^ point },
        () => newAbState(runSeed, w),
        runAbWorkload,
        make,
      );
      const before = loadAb(copyOf(image, 2));
      const ackedSeq = state.lastAcked?.seq ?? 0;
      assert.ok(before.seq >= ackedSeq, `workload image lost an acknowledged write (seq ${ackedSeq})`);
      // Recovery = what a restarting process does: open (creating missing slots), then write again.
      const rewrite = new Uint8Array([0xee, point & 0xff, (point >> 8) & 0xff]);
      await crashEveryRecoveryCall(
        image,
        runSeed + point,
        async (fs) => {
          mkdirDurable(fs, AB_DIR, path.posix);
          const { file } = openAbFile(fs, AB_DIR, AB_NAME);
          file.write(rewrite);
          file.close();
        },
        async (after, where) => {
          const context = `${w.name} workload crash after mutation ${point}/${mutations}, ${where}; replay: CAIRN_SEED=${seed}`;
          try {
            const got = loadAb(after);
            const unchanged =
              got.seq === before.seq &&
              ((got.payload === undefined && before.payload === undefined) ||
                (got.payload !== undefined &&
                  before.payload !== undefined &&
                  bytesEqual(got.payload, before.payload)));
            const rewritten =
              got.seq === before.seq + 1 && got.payload !== undefined && bytesEqual(got.payload, rewrite);
            assert.ok(
              unchanged || rewritten,
              `loaded seq ${got.seq}; expected the pre-recovery seq ${before.seq} or the rewrite at ${before.seq + 1}`,
            );
            // And the store keeps working: a write after this recovery survives the next crash.
            mkdirDurable(after, AB_DIR, path.posix);
            const { file } = openAbFile(after, AB_DIR, AB_NAME);
            const last = new Uint8Array([9, 9, got.seq & 0xff]);
            file.write(last);
            file.close();
            const final = loadAb(after.crashImage(DROP_ALL));
            assert.equal(final.seq, got.seq + 1, 'a write after the interrupted recovery did not survive');
            assert.ok(final.payload && bytesEqual(final.payload, last));
          } catch (err) {
            throw new Error(`${context}: ${describeError(err)}`, { cause: err });
          }
        },
        counts,
      );
    }
  }
  console.log('A/B crash-during-recovery states', counts);
  assert.ok(counts.states >= 1000, `only ${counts.states} crash-during-recovery states`);
});
