/**
 * A seeded random WAL workload plus an oracle of what recovery may legally return, shared by the
 * power-loss, error-injection and bit-flip suites.
 *
 * The oracle keeps the log's content as a list of versions (index → payload). Appends extend the
 * current version; a back truncation starts a new one (a reset only moves the front, see resetCalled). Until such a call resolves, the
 * previous version stays admissible (the cut may not be durable yet); once it resolves, older
 * versions are not (what was cut must never come back). It also tracks:
 *  - ackedNext: every record below it was covered by a resolved `sync()` (clamped by later back
 *    truncations), so it must be present byte-identical unless pruned from the front;
 *  - the front floor: the highest first index made durable by a resolved truncateFront/reset
 *    (nothing below it may come back) and the highest one requested (the first index may not
 *    exceed it).
 */
import assert from 'node:assert/strict';
import { bytesEqual } from '../../src/lib/bytes.ts';
import { Rng } from '../../src/lib/rng.ts';
import type { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import type { WalOptions, WriteAheadLog } from '../../src/wal/types.ts';
import { Wal } from '../../src/wal/wal.ts';
import { isCrashError } from './crashHarness.ts';

export const WAL_DIR = '/node/wal';

export interface WalWorkloadSpec {
  name: string;
  /** Random steps (append / sync / truncate / reset / reopen). */
  steps: number;
  segmentBytes: number;
  /** Typical largest payload; 2% of records are larger than a segment. */
  maxPayloadBytes: number;
  syncOffThread: boolean;
  preallocate: boolean;
  /** When the spare segment is prepared (preallocated logs; production runs 'always-ready'). */
  spareSegment?: 'at-half-full' | 'always-ready';
  initialIndex?: number;
  /** Step mix (probabilities of the rarer operations; the rest is appends and syncs). */
  truncateFrontP: number;
  truncateBackP: number;
  resetP: number;
  reopenP: number;
  /**
   * After the random steps, always run a back truncation that cuts inside the tail segment and a
   * front truncation (A/B meta write), so a suite that must exercise those I/O paths does so
   * whatever its seed drew. Off by default: it changes the call sequence of the other suites.
   */
  endWithTruncations?: boolean;
}

/**
 * The truncation-heavy workload of the WAL power-loss suite (4 KiB segments, every maintenance
 * operation often): shared with the regression tests that replay one of its crash points.
 */
export const WAL_LARGE_TRUNCATIONS: WalWorkloadSpec = {
  name: 'wal-large-4k-truncations',
  steps: 300,
  segmentBytes: 4096,
  maxPayloadBytes: 400,
  syncOffThread: false,
  preallocate: true,
  truncateFrontP: 0.08,
  truncateBackP: 0.08,
  resetP: 0.02,
  reopenP: 0.03,
};

interface SyncToken {
  target: number;
}

export class WalOracle {
  private readonly versions: Map<number, Uint8Array>[] = [new Map()];
  private admissibleFrom = 0;
  private readonly outstanding = new Set<SyncToken>();
  /** Highest first index whose truncation/reset resolved. */
  floorResolved: number;
  /** Highest first index ever requested. */
  floorRequested: number;
  ackedNext: number;
  /** The log's range as the workload sees it while the power is on. */
  first: number;
  next: number;
  acks = 0;

  constructor(initialIndex: number) {
    this.floorResolved = initialIndex;
    this.floorRequested = initialIndex;
    this.ackedNext = initialIndex;
    this.first = initialIndex;
    this.next = initialIndex;
  }

  private get current(): Map<number, Uint8Array> {
    return this.versions.at(-1)!;
  }

  appended(payload: Uint8Array): void {
    this.current.set(this.next++, payload);
  }

  syncCalled(): SyncToken {
    const token = { target: this.next };
    this.outstanding.add(token);
    return token;
  }

  syncResolved(token: SyncToken): void {
    this.outstanding.delete(token);
    if (token.target > this.ackedNext) this.ackedNext = token.target;
    this.acks++;
  }

  syncRejected(token: SyncToken): void {
    this.outstanding.delete(token);
  }

  truncateFrontCalled(n: number): void {
    if (n > this.floorRequested) this.floorRequested = n;
  }

  truncateFrontResolved(n: number): void {
    if (n > this.floorResolved) this.floorResolved = n;
    this.first = n;
  }

  truncateBackCalled(n: number): void {
    const cut = new Map<number, Uint8Array>();
    for (const [i, p] of this.current) if (i < n) cut.set(i, p);
    this.versions.push(cut);
    if (this.ackedNext > n) this.ackedNext = n;
    for (const t of this.outstanding) if (t.target > n) t.target = n;
    this.next = n;
  }

  truncateBackResolved(): void {
    this.admissibleFrom = this.versions.length - 1;
  }

  /**
   * A reset to n >= next drops every record by moving the front to n: no index at or above n exists
   * in any admissible version (back truncations are awaited before anything else), so it needs no new
   * version, only the front bounds.
   */
  resetCalled(n: number): void {
    if (n > this.floorRequested) this.floorRequested = n;
  }

  resetResolved(n: number): void {
    if (n > this.floorResolved) this.floorResolved = n;
    this.first = n;
    this.next = n;
  }

  /**
   * A new process recovered `summary` after the previous one was killed, and continues from it. The
   * dead process's outstanding syncs never resolve; the versions admissible before stay admissible
   * (a power cut may still undo what nobody fsynced, a back truncation included).
   */
  reopenedAfterKill(summary: RecoveredSummary): void {
    this.outstanding.clear();
    const version = new Map<number, Uint8Array>();
    for (const [k, record] of summary.records.entries()) version.set(summary.first + k, record);
    this.versions.push(version);
    this.first = summary.first;
    this.next = summary.next;
  }

  payloadAt(index: number): Uint8Array | undefined {
    return this.current.get(index);
  }

  /** Asserts that a recovered log is one that a crash could legally leave. */
  checkRecovered(wal: WriteAheadLog): RecoveredSummary {
    const first = wal.firstIndex;
    const next = wal.nextIndex;
    assert.ok(
      first >= this.floorResolved,
      `first index ${first} is below ${this.floorResolved}, whose truncation resolved: pruned records came back`,
    );
    assert.ok(
      first <= this.floorRequested,
      `first index ${first} is above any requested (${this.floorRequested})`,
    );
    if (this.ackedNext > first) {
      assert.ok(
        next >= this.ackedNext,
        `lost acknowledged records: recovered [${first}, ${next}), acked < ${this.ackedNext}`,
      );
    }
    const records: Uint8Array[] = [];
    for (const { index, payload } of wal.iterate()) {
      assert.equal(index, first + records.length, 'iterate is not contiguous');
      records.push(payload);
    }
    assert.equal(records.length, next - first, 'iterate count differs from nextIndex - firstIndex');
    for (let i = first; i < Math.min(next, this.ackedNext); i++) {
      const want = this.current.get(i);
      assert.ok(
        want && bytesEqual(records[i - first]!, want),
        `acknowledged record ${i} differs after recovery`,
      );
    }
    let matched = false;
    for (let v = this.versions.length - 1; v >= this.admissibleFrom && !matched; v--) {
      const version = this.versions[v]!;
      matched = records.every((r, k) => {
        const want = version.get(first + k);
        return want !== undefined && bytesEqual(r, want);
      });
    }
    assert.ok(matched, `recovered [${first}, ${next}) is not a prefix of any admissible version of the log`);
    return { first, next, records };
  }
}

export interface RecoveredSummary {
  first: number;
  next: number;
  records: Uint8Array[];
}

export interface WalState {
  spec: WalWorkloadSpec;
  rng: Rng;
  oracle: WalOracle;
  /** Errors surfaced to the workload (error-injection runs inspect them). */
  errors: unknown[];
  /** The log instance the workload currently uses (undefined until opened). */
  wal: Wal | undefined;
  /** Called with the open log and the error when a call fails, before the workload releases the log. */
  onError?: (wal: Wal, err: unknown) => Promise<void>;
}

export function newWalState(seed: number, spec: WalWorkloadSpec): WalState {
  return {
    spec,
    rng: new Rng(seed),
    oracle: new WalOracle(spec.initialIndex ?? 0),
    errors: [],
    wal: undefined,
  };
}

export function walOptions(fs: SimulatedFileSystem, spec: WalWorkloadSpec): WalOptions {
  return {
    fs,
    dir: WAL_DIR,
    segmentBytes: spec.segmentBytes,
    syncOffThread: spec.syncOffThread,
    preallocate: spec.preallocate,
    ...(spec.spareSegment !== undefined ? { spareSegment: spec.spareSegment } : {}),
    initialIndex: spec.initialIndex ?? 0,
  };
}

export function randomPayload(rng: Rng, spec: WalWorkloadSpec, index: number): Uint8Array {
  const r = rng.next();
  const size =
    r < 0.05
      ? 0
      : r < 0.07
        ? rng.int(spec.segmentBytes, spec.segmentBytes * 2)
        : rng.int(1, spec.maxPayloadBytes + 1);
  const p = rng.bytes(size);
  // Stamp the index so a record recovered at the wrong position is obvious in a dump.
  if (size >= 4) new DataView(p.buffer).setUint32(0, index, true);
  return p;
}

/**
 * The workload. Throws the first unexpected error; stops quietly (by rethrowing the crash) when the
 * file system has lost power.
 */
export async function runWalWorkload(fs: SimulatedFileSystem, state: WalState): Promise<void> {
  const { spec, rng, oracle } = state;
  let wal: Wal | undefined;
  const inFlight: Promise<void>[] = [];
  const trackSync = (): Promise<void> => {
    const token = oracle.syncCalled();
    return wal!.sync().then(
      () => oracle.syncResolved(token),
      (err) => {
        oracle.syncRejected(token);
        throw err;
      },
    );
  };
  const settleInFlight = async (): Promise<void> => {
    const all = inFlight.splice(0);
    const results = await Promise.allSettled(all);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  };
  const truncateFront = async (n: number): Promise<void> => {
    oracle.truncateFrontCalled(n);
    await wal!.truncateFront(n);
    oracle.truncateFrontResolved(n);
  };
  const truncateBack = async (n: number): Promise<void> => {
    oracle.truncateBackCalled(n);
    await wal!.truncateBack(n);
    oracle.truncateBackResolved();
  };
  const append = (count: number): void => {
    const payloads = Array.from({ length: count }, (_, k) => randomPayload(rng, spec, oracle.next + k));
    const firstIndex: number = wal!.append(payloads, oracle.next);
    assert.equal(firstIndex, oracle.next);
    for (const payload of payloads) oracle.appended(payload);
  };
  try {
    wal = await Wal.open(walOptions(fs, spec));
    state.wal = wal;
    for (let step = 0; step < spec.steps; step++) {
      // One uniform draw picks the step: each rare operation owns a slice of [0, 1).
      const r = rng.next();
      const tf = spec.truncateFrontP;
      const tb = tf + spec.truncateBackP;
      const rs = tb + spec.resetP;
      const ro = rs + spec.reopenP;
      if (r < tf) {
        await truncateFront(rng.int(oracle.first, oracle.next + 1));
      } else if (r < tb) {
        await truncateBack(rng.int(Math.max(oracle.first, oracle.next - 6), oracle.next + 1));
      } else if (r < rs) {
        const n = oracle.next + rng.int(0, 3);
        oracle.resetCalled(n);
        await wal.reset(n);
        oracle.resetResolved(n);
      } else if (r < ro) {
        await settleInFlight();
        await wal.close();
        wal = undefined;
        wal = await Wal.open(walOptions(fs, spec));
        state.wal = wal;
        // With the power on, a clean reopen returns exactly the log as written.
        assert.equal(wal.firstIndex, oracle.first, 'reopen: first index');
        assert.equal(wal.nextIndex, oracle.next, 'reopen: next index');
        for (const { index, payload } of wal.iterate()) {
          assert.ok(bytesEqual(payload, oracle.payloadAt(index)!), `reopen: record ${index} differs`);
        }
      } else {
        const u = rng.next();
        if (u < 0.55) {
          append(rng.int(1, 5));
        } else if (u < 0.8) {
          await trackSync();
        } else {
          // Not awaited: later appends and syncs overlap it (group commit, fsync on the pool).
          // Marked handled now: it may reject while the workload awaits something else (a front
          // truncation's background unlinks); settleInFlight still sees the rejection.
          const pending = trackSync();
          pending.catch(() => {});
          inFlight.push(pending);
        }
      }
    }
    await settleInFlight();
    if (spec.endWithTruncations) {
      // Two synced records, so the back truncation cuts bytes inside the tail segment on disk
      // (not only buffered records) and the front one still has a record to drop.
      append(2);
      await trackSync();
      await truncateBack(oracle.next - 1);
      await truncateFront(oracle.first + 1);
    }
    await wal.close();
  } catch (err) {
    state.errors.push(err);
    // Let stragglers settle so no rejection goes unhandled, and release the log.
    await Promise.allSettled(inFlight);
    if (wal !== undefined && state.onError) await state.onError(wal, err);
    await wal?.close().catch(() => {});
    if (fs.crashed && !isCrashError(err)) {
      throw new Error(`after the crash the workload saw an unrelated error: ${String(err)}`, { cause: err });
    }
    throw err;
  }
}

export interface WalCheckTally {
  recoveries: number;
  tornTailWarnings: number;
  /** Recoveries that returned records beyond the acknowledged ones (unsynced data that survived). */
  beyondAcked: number;
}

export function newWalTally(): WalCheckTally {
  return { recoveries: 0, tornTailWarnings: 0, beyondAcked: 0 };
}

/**
 * Recovers the WAL from a crash image and checks the oracle, a second recovery, verify(), and that
 * appends made after recovery survive another crash (torn tail physically repaired).
 */
export async function checkWalImage(
  image: SimulatedFileSystem,
  state: WalState,
  tally: WalCheckTally,
): Promise<RecoveredSummary> {
  const { spec, oracle } = state;
  const warnings: string[] = [];
  const open = (fs: SimulatedFileSystem) =>
    Wal.open({ ...walOptions(fs, spec), onWarning: (message) => warnings.push(message) });

  const wal = await open(image);
  const first = oracle.checkRecovered(wal);
  wal.verify();
  await wal.close();
  tally.recoveries++;
  if (warnings.some((w) => w.includes('torn'))) tally.tornTailWarnings++;
  if (first.next > Math.max(oracle.ackedNext, first.first)) tally.beyondAcked++;

  const again = await open(image);
  const second = oracle.checkRecovered(again);
  assert.equal(second.first, first.first, 'second recovery: first index differs');
  assert.equal(second.next, first.next, 'second recovery: next index differs');
  for (let i = 0; i < first.records.length; i++) {
    assert.ok(
      bytesEqual(first.records[i]!, second.records[i]!),
      `second recovery: record ${first.first + i} differs`,
    );
  }

  // Appends after recovery, synced, must survive another crash.
  const extra = [new Uint8Array([1, 2, 3]), state.rng.bytes(spec.maxPayloadBytes), new Uint8Array(0)];
  const at = again.append(extra, first.next);
  await again.sync();
  await again.close();
  const reborn = await open(image.crashImage());
  assert.equal(reborn.firstIndex, first.first, 'after the post-recovery crash: first index');
  assert.equal(reborn.nextIndex, at + extra.length, 'after the post-recovery crash: appended records lost');
  for (let i = 0; i < extra.length; i++) {
    assert.ok(bytesEqual(reborn.read(at + i), extra[i]!), `post-recovery record ${at + i} differs`);
  }
  if (first.records.length > 0) {
    assert.ok(
      bytesEqual(reborn.read(first.first), first.records[0]!),
      'post-recovery crash changed old records',
    );
  }
  await reborn.close();
  return first;
}
