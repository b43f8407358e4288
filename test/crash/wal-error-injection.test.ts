/**
 * Error injection into the WAL: every I/O call site of several workloads × {EIO, ENOSPC} (and short
 * writes for writev). For each case:
 *  - a short write is absorbed (writeFully loops) and the workload completes with the exact log;
 *  - any other injected error reaches the caller as a typed rejection/throw carrying the errno;
 *  - a failed mutation latches the log: later sync() and append() fail with the same error;
 *  - nothing is acknowledged on its strength, and earlier acknowledged data is intact: the crash
 *    images of the disk right after the failure recover to a state the oracle accepts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bytesEqual } from '../../src/lib/bytes.ts';
import { CairnError, errnoCode } from '../../src/lib/errors.ts';
import { seedFromEnv } from '../../src/lib/rng.ts';
import {
  DROP_ALL,
  KEEP_ALL,
  PAGES_ZEROED,
  SimulatedFileSystem,
} from '../../src/testing/simulatedFileSystem.ts';
import { Wal } from '../../src/wal/wal.ts';
import { causeHasErrno, enumerateFaultCases, type FaultCase } from '../support/faultSweep.ts';
import {
  checkWalImage,
  newWalState,
  newWalTally,
  runWalWorkload,
  type WalState,
  type WalWorkloadSpec,
  walOptions,
} from '../support/walModel.ts';

const SPECS: WalWorkloadSpec[] = [
  {
    name: 'wal-faults-sync',
    steps: 70,
    segmentBytes: 4096,
    maxPayloadBytes: 400,
    syncOffThread: false,
    preallocate: true,
    truncateFrontP: 0.05,
    truncateBackP: 0.05,
    resetP: 0.02,
    reopenP: 0.04,
    // The coverage check below demands a fault on truncate: some seeds draw no truncation at all.
    endWithTruncations: true,
  },
  {
    name: 'wal-faults-pool',
    steps: 70,
    segmentBytes: 8192,
    maxPayloadBytes: 900,
    syncOffThread: true,
    preallocate: false,
    truncateFrontP: 0.05,
    truncateBackP: 0.05,
    resetP: 0.02,
    reopenP: 0.04,
    // The coverage check below demands a fault on truncate: some seeds draw no truncation at all.
    endWithTruncations: true,
  },
];

interface Coverage {
  cases: number;
  fired: number;
  absorbedShortWrites: number;
  surfaced: number;
  latchedChecked: number;
  sitesByOp: Map<string, number>;
}

async function runCase(spec: WalWorkloadSpec, seed: number, fc: FaultCase, cov: Coverage): Promise<void> {
  const where = `${spec.name} ${fc.error} on ${fc.op} #${fc.nth} (replay: CAIRN_SEED=${seed})`;
  const fs = new SimulatedFileSystem({ seed });
  const fault = fs.injectFault({ op: fc.op, nth: fc.nth, error: fc.error });
  const state: WalState = newWalState(seed, spec);
  let latchProbe: { sync: unknown; append: unknown } | undefined;
  state.onError = async (wal: Wal) => {
    // Probe the latch only after a failed mutation: after a failed read the log stays usable, and
    // a probing append would then add a record the oracle does not know.
    if (fault.firstFiring?.mutating !== true) return;
    const sync = await wal.sync().then(
      () => undefined,
      (e: unknown) => e,
    );
    let append: unknown;
    try {
      wal.append([new Uint8Array([9])]);
    } catch (e) {
      append = e;
    }
    latchProbe = { sync, append };
  };
  let failure: unknown;
  try {
    await runWalWorkload(fs, state);
  } catch (err) {
    failure = err;
  }
  cov.cases++;
  if (fault.firedCount === 0) {
    // The workload took fewer calls of this kind than the probe (cannot happen for a deterministic
    // workload unless an earlier fault changed its path, which a single fault cannot).
    assert.equal(failure, undefined, `${where}: failed without the fault firing: ${String(failure)}`);
    return;
  }
  cov.fired++;
  cov.sitesByOp.set(fc.op, (cov.sitesByOp.get(fc.op) ?? 0) + 1);

  if (fc.error === 'SHORT_WRITE') {
    assert.equal(
      failure,
      undefined,
      `${where}: a short write must be retried, not surface: ${String(failure)}`,
    );
    cov.absorbedShortWrites++;
    const wal = await Wal.open(walOptions(fs, spec));
    assert.equal(wal.firstIndex, state.oracle.first);
    assert.equal(wal.nextIndex, state.oracle.next);
    for (const { index, payload } of wal.iterate()) {
      assert.ok(bytesEqual(payload, state.oracle.payloadAt(index)!), `${where}: record ${index} differs`);
    }
    await wal.close();
    return;
  }

  if (failure === undefined) {
    // Only a fault on a path that needs no I/O result may pass silently — there is none in the WAL.
    assert.fail(`${where}: the injected ${fc.error} was swallowed`);
  }
  assert.ok(
    failure instanceof CairnError || causeHasErrno(failure, fc.error),
    `${where}: untyped ${String(failure)}`,
  );
  assert.ok(
    causeHasErrno(failure, fc.error),
    `${where}: the error does not carry ${fc.error}: ${String(failure)}`,
  );
  cov.surfaced++;

  if (latchProbe !== undefined) {
    assert.ok(
      failure instanceof CairnError && failure.kind === 'fatal',
      `${where}: a failed write path must be fatal`,
    );
    // The log is latched: every later call fails with the original error.
    assert.ok(latchProbe.sync !== undefined, `${where}: sync() resolved on a failed log`);
    assert.ok(latchProbe.append !== undefined, `${where}: append() accepted on a failed log`);
    assert.equal(errnoCode(latchProbe.sync), errnoCode(failure), `${where}: later sync fails differently`);
    assert.equal(
      (latchProbe.sync as Error).message,
      (failure as Error).message,
      `${where}: later sync error differs`,
    );
    assert.equal(
      (latchProbe.append as Error).message,
      (failure as Error).message,
      `${where}: later append error differs`,
    );
    cov.latchedChecked++;
  }

  // Earlier acknowledged data intact, nothing acknowledged on the failed call's strength.
  const tally = newWalTally();
  // The two extremes, the default random model (page subsets in any order, torn prefixes) and page
  // subsets with a zeroed page in flight.
  for (const policy of [DROP_ALL, KEEP_ALL, {}, PAGES_ZEROED]) {
    try {
      await checkWalImage(fs.crashImage(policy), state, tally);
    } catch (err) {
      throw new Error(`${where}: recovery after the failure: ${String(err)}`, { cause: err });
    }
  }
}

test('WAL: every I/O call site × {EIO, ENOSPC, short write} surfaces, latches and loses nothing acknowledged', async () => {
  const seed = seedFromEnv();
  console.log('seed', seed);
  const cov: Coverage = {
    cases: 0,
    fired: 0,
    absorbedShortWrites: 0,
    surfaced: 0,
    latchedChecked: 0,
    sitesByOp: new Map(),
  };
  for (const [i, spec] of SPECS.entries()) {
    const s = (seed + i) >>> 0;
    const probe = new SimulatedFileSystem({ seed: s });
    await runWalWorkload(probe, newWalState(s, spec));
    const cases = enumerateFaultCases(probe, s, 40);
    for (const fc of cases) await runCase(spec, s, fc, cov);
  }
  console.log('WAL fault cases', { ...cov, sitesByOp: Object.fromEntries(cov.sitesByOp) });
  for (const op of [
    'open',
    'read',
    'writev',
    'sync',
    'syncAsync',
    'allocate',
    'truncate',
    'unlink',
    'syncDir',
    'readdir',
    'mkdir',
  ]) {
    assert.ok((cov.sitesByOp.get(op) ?? 0) > 0, `no fault on ${op} was exercised`);
  }
  assert.ok(cov.absorbedShortWrites > 0 && cov.latchedChecked > 0);
});
