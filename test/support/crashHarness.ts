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
 *
 * `runKillThenCrashSweep` is the two-process variant: a first process is killed (kill -9, the page
 * cache survives) after a chosen mutation or after its workload completed, a second process opens
 * the same disk and does more acknowledged work, then the power fails (at sampled points of the
 * second process and after it completed), and the image is checked: whatever nobody ever fsynced,
 * the dead process's creates and renames included, may be gone.
 */

import { describe as describeError } from '../../src/lib/errors.ts';
import { Rng } from '../../src/lib/rng.ts';
import type {
  CrashPolicy,
  SimulatedFileSystem as SimFs,
  SimOp,
} from '../../src/testing/simulatedFileSystem.ts';
import {
  PAGE_SUBSET,
  PAGES_GARBLED,
  PAGES_ZEROED,
  PREFIX_ONLY,
  SimulatedFileSystem,
} from '../../src/testing/simulatedFileSystem.ts';

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
  /** Kill-then-crash sweeps: mutation of the first process after which it was killed, or 'end'. */
  killedAfter?: number | 'end';
  /** How to replay this failure (see SweepOptions.replay); default `CAIRN_SEED=<seed>`. */
  replay?: string;
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
  /** The default model: page subsets, zeroed and garbled pages, torn prefixes, drop, keep. */
  random: { name: 'random', policy: {} },
  /** The model before page subsets (drop / keep / torn prefix), for sweeps with an open finding. */
  randomPrefix: { name: 'random-prefix', policy: PREFIX_ONLY },
  pages: { name: 'pages', policy: PAGE_SUBSET },
  pagesZeroed: { name: 'pages-zeroed', policy: PAGES_ZEROED },
  pagesGarbled: { name: 'pages-garbled', policy: PAGES_GARBLED },
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
  /**
   * The command that replays this sweep, printed in every failure. Default `CAIRN_SEED=<seed>`,
   * which is right only when `seed` IS the test's top seed: a test that derives per-scenario seeds
   * from it must pass the command that sets the top seed (and names the test file).
   */
  replay?: string;
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
  const replay = options.replay ?? `CAIRN_SEED=${seed}`;
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
            `(replay: ${replay}): ${describeError(err)}`,
          { cause: err },
        );
      }
    }
    if (!fs.crashed) {
      throw new Error(
        `${scenario.name}: the run never reached mutation ${point} of ${mutations}: the workload is not ` +
          `deterministic for seed ${seed} (replay: ${replay})`,
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
        replay,
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
        replay,
      };
      await checkOrExplain(scenario, probe.crashImage(named.policy), probeState, ctx);
      crashStates++;
    }
  }
  return { scenario: scenario.name, seed, mutations, points: points.length, crashStates };
}

export function describeContext(ctx: CrashContext): string {
  const at = ctx.crashedAt ? ` (${ctx.crashedAt})` : '';
  const kill =
    ctx.killedAfter === undefined ? '' : `first process killed after mutation ${ctx.killedAfter}, then `;
  return (
    `[${ctx.scenario}] ${kill}crash after mutation ${ctx.point}/${ctx.mutations}${at}, policy ${ctx.policy}; ` +
    `replay: ${ctx.replay ?? `CAIRN_SEED=${ctx.seed}`}`
  );
}

export interface KillThenCrashScenario<S> {
  name: string;
  /** Fresh workload-side state, shared by both processes (what was written, what was acknowledged). */
  start(seed: number): S;
  /**
   * The first process. Deterministic for a seed; must stop (throw or return) once its file system
   * view is killed (every call throws EKILLED). It never closes what it opened if it is killed.
   */
  first(fs: SimFs, state: S): Promise<void>;
  /**
   * The second process: opens what the killed one left on the same disk (its page cache included)
   * and does more acknowledged work. Must stop once the power fails (ECRASH).
   */
  second(fs: SimFs, state: S): Promise<void>;
  /** Recovers from the power-loss image and asserts the invariants; throw to fail. */
  check(image: SimFs, state: S, ctx: CrashContext): Promise<void> | void;
}

export interface KillThenCrashOptions {
  seed: number;
  /** Where the first process is killed; after its completed workload is always added. */
  killPoints: CrashPoints;
  /** Power-loss points sampled in each second process, besides after it completed (default 2). */
  crashPointsPerKill?: number;
  /** Images per power-loss point, one per policy (default: random). */
  policies?: readonly NamedPolicy[];
}

/** Workload → kill -9 → reopen → more acknowledged work → power loss → check. */
export async function runKillThenCrashSweep<S>(
  scenario: KillThenCrashScenario<S>,
  options: KillThenCrashOptions,
): Promise<SweepResult> {
  const { seed } = options;
  const policies = options.policies ?? [POLICIES.random];
  if (policies.length === 0) throw new RangeError('runKillThenCrashSweep needs at least one policy');

  const probe = new SimulatedFileSystem({ seed, traceMutations: true });
  await runOrExplain(
    { name: scenario.name, run: (fs, st) => scenario.first(fs, st) },
    probe,
    scenario.start(seed),
    `probe run of the first process (seed ${seed})`,
  );
  const mutations = probe.mutationCount;
  const killPoints: (number | 'end')[] = [
    ...choosePoints(options.killPoints, probe.mutationTrace, mutations, seed),
    'end',
  ];
  const rng = new Rng(seed ^ 0x4b111);
  let crashStates = 0;

  /** Runs the first process up to its kill; returns the second process's view. */
  const untilKilled = async (killedAfter: number | 'end'): Promise<{ fs: SimFs; state: S }> => {
    const fs = new SimulatedFileSystem({ seed });
    const state = scenario.start(seed);
    if (killedAfter !== 'end') fs.killAfter(killedAfter);
    try {
      await scenario.first(fs, state);
    } catch (err) {
      if (!fs.killed) {
        throw new Error(
          `${scenario.name}: first process failed before kill point ${killedAfter} without a kill ` +
            `(replay: CAIRN_SEED=${seed}): ${describeError(err)}`,
          { cause: err },
        );
      }
    }
    if (killedAfter === 'end') fs.kill();
    if (!fs.killed) {
      throw new Error(
        `${scenario.name}: the first process never reached mutation ${killedAfter} of ${mutations}: ` +
          `the workload is not deterministic for seed ${seed}`,
      );
    }
    return { fs: fs.successor(), state };
  };

  for (const killedAfter of killPoints) {
    // Second process to completion: its length, and the power cut after it completed.
    const done = await untilKilled(killedAfter);
    try {
      await scenario.second(done.fs, done.state);
    } catch (err) {
      throw new Error(
        `${scenario.name}: second process failed after the first was killed after mutation ` +
          `${killedAfter} (replay: CAIRN_SEED=${seed}): ${describeError(err)}`,
        { cause: err },
      );
    }
    const secondMutations = done.fs.mutationCount;
    for (const named of policies) {
      const ctx: CrashContext = {
        scenario: scenario.name,
        seed,
        point: 'end',
        mutations: secondMutations,
        policy: named.name,
        killedAfter,
      };
      await checkOrExplain(scenario, done.fs.crashImage(named.policy), done.state, ctx);
      crashStates++;
    }
    // Power cuts inside the second process.
    const count = Math.min(options.crashPointsPerKill ?? 2, secondMutations);
    const all = Array.from({ length: secondMutations }, (_, i) => i + 1);
    for (const point of sampleWithoutReplacement(all, count, rng).sort((a, b) => a - b)) {
      const { fs, state } = await untilKilled(killedAfter);
      fs.crashAfter(point, policies[0]!.policy);
      try {
        await scenario.second(fs, state);
      } catch (err) {
        if (!fs.crashed) {
          throw new Error(
            `${scenario.name}: second process failed before crash point ${point} without a crash ` +
              `(first killed after ${killedAfter}; replay: CAIRN_SEED=${seed}): ${describeError(err)}`,
            { cause: err },
          );
        }
      }
      if (!fs.crashed) {
        throw new Error(
          `${scenario.name}: the second process never reached mutation ${point}: not deterministic for seed ${seed}`,
        );
      }
      for (let i = 0; i < policies.length; i++) {
        const named = policies[i]!;
        const image = i === 0 ? fs.crashedImage() : fs.crashImage(named.policy);
        const ctx: CrashContext = {
          scenario: scenario.name,
          seed,
          point,
          mutations: secondMutations,
          policy: named.name,
          killedAfter,
        };
        await checkOrExplain(scenario, image, state, ctx);
        crashStates++;
      }
    }
  }
  return { scenario: scenario.name, seed, mutations, points: killPoints.length, crashStates };
}

async function runOrExplain<S>(
  scenario: Pick<CrashScenario<S>, 'name' | 'run'>,
  fs: SimFs,
  state: S,
  what: string,
): Promise<void> {
  try {
    await scenario.run(fs, state);
  } catch (err) {
    throw new Error(`${scenario.name}: ${what} failed: ${describeError(err)}`, { cause: err });
  }
}

async function checkOrExplain<S>(
  scenario: Pick<CrashScenario<S>, 'check'>,
  image: SimFs,
  state: S,
  ctx: CrashContext,
) {
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

/** True if `err` (or any error in its cause chain) is the simulated kill of this process. */
export function isKillError(err: unknown): boolean {
  for (let e: unknown = err; e !== undefined && e !== null; e = (e as { cause?: unknown }).cause) {
    if ((e as { code?: unknown }).code === 'EKILLED') return true;
  }
  return false;
}
