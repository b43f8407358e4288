/**
 * Enumerates fault-injection cases for a workload: run it once to count calls per kind, then one
 * case per (kind, k-th call, error), where the errors are EIO and ENOSPC for every faultable kind
 * plus SHORT_WRITE for writev. Large counts are sampled (seeded) down to `maxPerKind` calls per kind,
 * always keeping the first and the last call.
 */

import { Rng } from '../../src/lib/rng.ts';
import {
  FAULTABLE_OPS,
  type FaultableOp,
  type FaultError,
  type SimulatedFileSystem,
} from '../../src/testing/simulatedFileSystem.ts';

export interface FaultCase {
  op: FaultableOp;
  nth: number;
  error: FaultError;
}

export function errorsFor(op: FaultableOp): FaultError[] {
  return op === 'writev' ? ['EIO', 'ENOSPC', 'SHORT_WRITE'] : ['EIO', 'ENOSPC'];
}

export function enumerateFaultCases(
  probe: SimulatedFileSystem,
  seed: number,
  maxPerKind: number,
): FaultCase[] {
  const rng = new Rng(seed ^ 0xfa17);
  const counts = probe.opCounts;
  const cases: FaultCase[] = [];
  for (const op of FAULTABLE_OPS) {
    const total = counts[op];
    if (total === 0) continue;
    let calls = Array.from({ length: total }, (_, i) => i + 1);
    if (calls.length > maxPerKind) {
      const middle = calls.slice(1, -1);
      for (let i = 0; i < maxPerKind - 2; i++) {
        const j = rng.int(i, middle.length);
        [middle[i], middle[j]] = [middle[j]!, middle[i]!];
      }
      calls = [1, ...middle.slice(0, maxPerKind - 2), total].sort((a, b) => a - b);
    }
    for (const nth of calls) for (const error of errorsFor(op)) cases.push({ op, nth, error });
  }
  return cases;
}

/** The injected errno somewhere in the cause chain of `err`. */
export function causeHasErrno(err: unknown, code: string): boolean {
  for (let e: unknown = err; e !== undefined && e !== null; e = (e as { cause?: unknown }).cause) {
    if ((e as { code?: unknown }).code === code) return true;
  }
  return false;
}
