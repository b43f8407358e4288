/**
 * Error injection into the A/B snapshot file: every I/O call site of a workload × {EIO, ENOSPC} (and
 * short writes for writev). The workload keeps writing after failures, so this also checks what
 * happens next:
 *  - a short write is absorbed (writeFully loops): no error, the last write loads back;
 *  - any other injected error reaches the caller as a typed CairnError carrying the errno, and that
 *    write is not acknowledged;
 *  - after a failed fsync the file is latched: every later write fails with the same error;
 *  - the crash images of the disk right after the run load the last acknowledged write or a later one.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { openAbFile } from '../../src/io/abFile.ts';
import { mkdirDurable } from '../../src/io/fileSystem.ts';
import { bytesEqual } from '../../src/lib/bytes.ts';
import { CairnError } from '../../src/lib/errors.ts';
import { seedFromEnv } from '../../src/lib/rng.ts';
import { DROP_ALL, KEEP_ALL, SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import {
  AB_DIR,
  AB_NAME,
  type AbWorkloadOptions,
  checkAbImage,
  newAbState,
  runAbWorkload,
} from '../support/abWorkload.ts';
import { causeHasErrno, enumerateFaultCases, type FaultCase } from '../support/faultSweep.ts';

const OPTIONS: AbWorkloadOptions = {
  writes: 30,
  reopenEvery: 6,
  maxPayloadBytes: 2000,
  continueAfterErrors: true,
};

/** The directory exists durably before faults are armed: creating it is not an A/B call site. */
function freshFs(seed: number): SimulatedFileSystem {
  const fs = new SimulatedFileSystem({ seed });
  mkdirDurable(fs, AB_DIR, path.posix);
  return fs;
}

test('A/B file: every I/O call site × {EIO, ENOSPC, short write} surfaces, latches on fsync and loses nothing acknowledged', async () => {
  const seed = seedFromEnv();
  console.log('seed', seed);
  const probe = freshFs(seed);
  await runAbWorkload(probe, newAbState(seed, OPTIONS));
  const cases = enumerateFaultCases(probe, seed, 60);
  const firedByOp = new Map<string, number>();
  let latched = 0;
  let continuedAfterWriteError = 0;
  for (const fc of cases) {
    const r = await runCase(seed, fc);
    if (r.fired) firedByOp.set(fc.op, (firedByOp.get(fc.op) ?? 0) + 1);
    if (r.latched) latched++;
    if (r.continued) continuedAfterWriteError++;
  }
  console.log(`A/B fault cases: ${cases.length}`, Object.fromEntries(firedByOp), {
    latched,
    continuedAfterWriteError,
  });
  for (const op of ['open', 'read', 'writev', 'sync', 'syncDir', 'truncate']) {
    assert.ok((firedByOp.get(op) ?? 0) > 0, `no fault on ${op} was exercised`);
  }
  assert.ok(latched > 0, 'no fsync failure was exercised');
});

async function runCase(
  seed: number,
  fc: FaultCase,
): Promise<{ fired: boolean; latched: boolean; continued: boolean }> {
  const where = `A/B ${fc.error} on ${fc.op} #${fc.nth} (replay: CAIRN_SEED=${seed})`;
  const fs = freshFs(seed);
  const fault = fs.injectFault(fc);
  const state = newAbState(seed, OPTIONS);
  let thrown: unknown;
  try {
    await runAbWorkload(fs, state);
  } catch (err) {
    thrown = err;
  }
  const result = { fired: fault.firedCount > 0, latched: false, continued: false };
  if (!result.fired) {
    assert.equal(thrown, undefined, `${where}: failed without the fault firing`);
    return result;
  }
  if (fc.error === 'SHORT_WRITE') {
    assert.deepEqual(state.errors, [], `${where}: a short write must be retried, not surface`);
    const { loaded } = openAbFile(fs, AB_DIR, AB_NAME);
    assert.equal(loaded.seq, state.lastAcked?.seq ?? 0);
    assert.ok(
      loaded.payload && state.lastAcked && bytesEqual(loaded.payload, state.lastAcked.payload),
      where,
    );
    return result;
  }
  assert.ok(state.errors.length > 0, `${where}: the injected error was swallowed`);
  const first = state.errors[0];
  assert.ok(first instanceof CairnError, `${where}: untyped error ${String(first)}`);
  assert.ok(
    causeHasErrno(first, fc.error),
    `${where}: the error does not carry ${fc.error}: ${String(first)}`,
  );
  if (fc.op === 'sync') {
    // A failed fsync latches: every later write fails with that same error, none is acknowledged.
    assert.ok(
      state.errors.every((e) => e === first),
      `${where}: a write after a failed fsync did not fail with the latched error`,
    );
    result.latched = true;
  }
  if (thrown === undefined && state.acks > (state.acksAtFirstError ?? 0)) result.continued = true;

  for (const policy of [DROP_ALL, KEEP_ALL, {}]) {
    try {
      checkAbImage(fs.crashImage(policy), state);
    } catch (err) {
      throw new Error(`${where}: recovery after the failure: ${String(err)}`, { cause: err });
    }
  }
  return result;
}
