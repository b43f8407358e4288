/**
 * Simulated power-loss harness: run a deterministic workload on a SimulatedFileSystem, cut the power
 * after chosen I/O calls, and check recovery on each resulting disk image.
 *
 * How a sweep works:
 *  1. Probe run: the workload runs to completion on `new SimulatedFileSystem({ seed })` with its
 *     mutations traced; that fixes N (mutations) and which call is which.
 *  2. Crash points are chosen: every mutation 1..N ('every'), or a seeded sample plus every mutation
 *     adjacent to a sync / rename / unlink / truncate / directory sync ('sample').
 *  3. For each point k the workload re-runs on a fresh file system with the same seed and
 *     `crashAfter(k)`: it stops at its next I/O call with ECRASH. The same seed makes the run identical
 *     up to the crash. One image per policy is taken at that instant (the first one by the crash,
 *     the others with `crashImage` on the frozen file system) and each is checked.
 *  4. Optionally a final "crash" after the workload completed (everything it did, nothing more).
 *
 * Every failure message carries the scenario, seed, crash point and policy, and the exact replay
 * (CAIRN_SEED=<seed>), so any failing state reproduces.
 */

import { describe as describeError } from '../../src/lib/errors.ts';
import { Rng } from '../../src/lib/rng.ts';
import type {
  CrashPolicy,
  SimulatedFileSystem as SimFs,
  SimOp,
} from '../../src/testing/simulatedFileSystem.ts';
import { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';

export interface CrashContext {
  scenario: string;
  seed: number;
  /** Mutation after which the power failed, or 'end' (after the workload completed). */
  point: number | 'end';
  /** Total mutations of the probe run. */
  mutations: number;
  policy: string;
  /** Op and path of the crashing mutation, when known. */
  crashedAt?: string;
}

export interface CrashScenario<S> {
  name: string;
  /** Fresh workload-side state (what was written, what was acknowledged). */
  start(seed: number): S;
  /**
   * The workload. Must be deterministic for a given seed (no clocks, no Math.random), and must stop
   * (throw or return) once the file system has crashed. Record acknowledgements in `state` only
   * after the durability promise resolved.
   */
  run(fs: SimFs, state: S): Promise<void>;
  /** Recovers from `image` and asserts the invariants; throw to fail. */
  check(image: SimFs, state: S, ctx: CrashContext): Promise<void> | void;
}

export type CrashPoints =
  | { mode: 'every' }
  | {
      mode: 'sample';
      /** Uniformly sampled points, in addition to the adjacent ones. */
      count: number;
      /** Crash right before, right after and one call after each mutation of these kinds. */
      adjacentTo?: readonly SimOp[];
      /** Cap on adjacent points (sampled down if exceeded). Default unlimited. */
      maxAdjacent?: number;
    };

export interface NamedPolicy {
  name: string;
  policy: CrashPolicy;
}

export const POLICIES = {
  random: { name: 'random', policy: {} },
  dropAll: { name: 'drop-all', policy: { data: 'drop', dirOps: 'drop' } },
  keepAll: { name: 'keep-all', policy: { data: 'keep', dirOps: 'keep' } },
  torn: { name: 'torn', policy: { data: 'torn', garbleProbability: 0.5, dirOps: 'random' } },
  tornGarbled: { name: 'torn-garbled', policy: { data: 'torn', garbleProbability: 1, dirOps: 'prefix' } },
} as const satisfies Record<string, NamedPolicy>;

export interface SweepOptions {
  seed: number;
  points: CrashPoints;
  /** Images per crash point, one per policy (default: random). */
  policies?: readonly NamedPolicy[];
  /** Also check images after the completed workload (default true). */
  includeEnd?: boolean;
}

export interface SweepResult {
  scenario: string;
  seed: number;
  mutations: number;
  points: number;
  crashStates: number;
}

export const DEFAULT_ADJACENT: readonly SimOp[] = [
  'sync',
  'syncAsync',
  'syncDir',
  'rename',
  'unlink',
  'truncate',
];

export async function runCrashSweep<S>(
  scenario: CrashScenario<S>,
  options: SweepOptions,
): Promise<SweepResult> {
  const { seed } = options;
  const policies = options.policies ?? [POLICIES.random];
  if (policies.length === 0) throw new RangeError('runCrashSweep needs at least one policy');

  // 1. Probe.
  const probe = new SimulatedFileSystem({ seed, traceMutations: true });
  const probeState = scenario.start(seed);
  await runOrExplain(scenario, probe, probeState, `probe run (seed ${seed})`);
  const trace = probe.mutationTrace;
  const mutations = probe.mutationCount;

  // 2. Points.
  const points = choosePoints(options.points, trace, mutations, seed);
  let crashStates = 0;

  // 3. Crash at each point.
  for (const point of points) {
    const fs = new SimulatedFileSystem({ seed });
    const state = scenario.start(seed);
    fs.crashAfter(point, policies[0]!.policy);
    try {
      await scenario.run(fs, state);
    } catch (err) {
      if (!fs.crashed) {
        throw new Error(
          `${scenario.name}: workload failed before crash point ${point} without a crash ` +
            `(replay: CAIRN_SEED=${seed}): ${describeError(err)}`,
          { cause: err },
        );
      }
    }
    if (!fs.crashed) {
      throw new Error(
        `${scenario.name}: the run never reached mutation ${point} of ${mutations}: the workload is not ` +
          `deterministic for seed ${seed}`,
      );
    }
    const m = trace[point - 1];
    for (let i = 0; i < policies.length; i++) {
      const named = policies[i]!;
      const image = i === 0 ? fs.crashedImage() : fs.crashImage(named.policy);
      const ctx: CrashContext = {
        scenario: scenario.name,
        seed,
        point,
        mutations,
        policy: named.name,
        ...(m ? { crashedAt: `${m.op} ${m.path}` } : {}),
      };
      await checkOrExplain(scenario, image, state, ctx);
      crashStates++;
    }
  }

  // 4. After the completed workload.
  if (options.includeEnd ?? true) {
    for (const named of policies) {
      const ctx: CrashContext = {
        scenario: scenario.name,
        seed,
        point: 'end',
        mutations,
        policy: named.name,
      };
      await checkOrExplain(scenario, probe.crashImage(named.policy), probeState, ctx);
      crashStates++;
    }
  }
  return { scenario: scenario.name, seed, mutations, points: points.length, crashStates };
}

export function describeContext(ctx: CrashContext): string {
  const at = ctx.crashedAt ? ` (${ctx.crashedAt})` : '';
  return (
    `[${ctx.scenario}] crash after mutation ${ctx.point}/${ctx.mutations}${at}, policy ${ctx.policy}; ` +
    `replay: CAIRN_SEED=${ctx.seed}`
  );
}

async function runOrExplain<S>(scenario: CrashScenario<S>, fs: SimFs, state: S, what: string): Promise<void> {
  try {
    await scenario.run(fs, state);
  } catch (err) {
    throw new Error(`${scenario.name}: ${what} failed: ${describeError(err)}`, { cause: err });
  }
}

async function checkOrExplain<S>(scenario: CrashScenario<S>, image: SimFs, state: S, ctx: CrashContext) {
  try {
    await scenario.check(image, state, ctx);
  } catch (err) {
    const wrapped = new Error(`${describeContext(ctx)}: ${describeError(err)}`, { cause: err });
    throw wrapped;
  }
}

function choosePoints(
  spec: CrashPoints,
  trace: readonly { index: number; op: SimOp }[],
  mutations: number,
  seed: number,
): number[] {
  if (spec.mode === 'every') return Array.from({ length: mutations }, (_, i) => i + 1);
  const rng = new Rng(seed ^ 0x5eed);
  const adjacentOps = new Set(spec.adjacentTo ?? DEFAULT_ADJACENT);
  let adjacent: number[] = [];
  for (const m of trace) {
    if (!adjacentOps.has(m.op)) continue;
    for (const p of [m.index - 1, m.index, m.index + 1]) if (p >= 1 && p <= mutations) adjacent.push(p);
  }
  adjacent = [...new Set(adjacent)];
  if (spec.maxAdjacent !== undefined && adjacent.length > spec.maxAdjacent) {
    adjacent = sampleWithoutReplacement(adjacent, spec.maxAdjacent, rng);
  }
  const chosen = new Set(adjacent);
  const all = Array.from({ length: mutations }, (_, i) => i + 1).filter((p) => !chosen.has(p));
  for (const p of sampleWithoutReplacement(all, Math.min(spec.count, all.length), rng)) chosen.add(p);
  return [...chosen].sort((a, b) => a - b);
}

function sampleWithoutReplacement<T>(items: readonly T[], count: number, rng: Rng): T[] {
  const copy = [...items];
  for (let i = 0; i < count; i++) {
    const j = rng.int(i, copy.length);
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy.slice(0, count);
}

/** True if `err` (or any error in its cause chain) is the simulated power loss. */
export function isCrashError(err: unknown): boolean {
  for (let e: unknown = err; e !== undefined && e !== null; e = (e as { cause?: unknown }).cause) {
    if ((e as { code?: unknown }).code === 'ECRASH') return true;
  }
  return false;
}
