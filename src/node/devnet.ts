import * as path from 'node:path';
import { seededCommittee } from '../domain/committee.ts';
import type { FileSystem } from '../io/fileSystem.ts';
import { realFileSystem } from '../io/realFileSystem.ts';
import { Rng } from '../lib/rng.ts';
import { loadOrCreateIdentity } from './devnetIdentity.ts';
import { DevnetSimulation, type SimulationEvents, type SimulationOptions } from './devnetSimulation.ts';
import { CairnNode, type RecoveryReport } from './node.ts';
import { ProgressReporter } from './progress.ts';

export const DEFAULT_DATA_DIR = path.join('.cairn', 'devnet');

export interface DevnetOptions extends SimulationOptions {
  dataDir: string;
  lanes: number;
  /** True when --lanes was given (a stored devnet with another lane count is then an error). */
  lanesExplicit: boolean;
  seed: number;
  /** Stop once the block store holds this many more blocks than at start (0 = no limit). */
  blocks: number;
  /** Stop after this many seconds (0 = no limit). */
  durationS: number;
  /** Progress line interval when stdout is not a terminal. */
  logIntervalS: number;
  fs?: FileSystem;
  /** Durable-event callbacks (the kill -9 harness reports them over IPC). */
  events?: SimulationEvents;
  out?: NodeJS.WritableStream & { isTTY?: boolean };
}

export interface DevnetResult {
  recovery: RecoveryReport;
  blocksFinalized: number;
  roads: number;
  stoppedBy: 'blocks' | 'duration' | 'signal' | 'error';
  error?: Error;
}

/**
 * Runs the devnet until `blocks`/`durationS` is reached, a SIGINT/SIGTERM arrives, or a store fails.
 * Shutdown is always the same: stop proposing, let in-flight writes finish, close the node.
 */
export async function runDevnet(options: DevnetOptions): Promise<DevnetResult> {
  const fs = options.fs ?? realFileSystem;
  const out = options.out ?? process.stdout;
  const say = (line: string) => out.write(`${line}\n`);
  let fatal: Error | undefined;
  let wakeStop: (() => void) | undefined;
  const stopRequested = new Promise<'signal' | 'error'>((resolve) => {
    wakeStop = () => resolve(fatal ? 'error' : 'signal');
  });
  const onFatal = (err: Error) => {
    fatal ??= err;
    wakeStop?.();
  };

  let identityCreated = false;
  let keys: ReturnType<typeof seededCommittee>['keys'] = [];
  const { node, recovery } = await CairnNode.open({
    dataDir: options.dataDir,
    fs,
    committee: () => {
      const { identity, created } = loadOrCreateIdentity(fs, options.dataDir, options);
      identityCreated = created;
      const made = seededCommittee(identity.lanes, identity.seed);
      keys = made.keys;
      return made.committee;
    },
    blockSegmentBytes: 32 * 1024 * 1024,
    onWarning: (message, details) => say(`warning: ${message} ${JSON.stringify(details)}`),
    onFatal,
  });
  say(describeStart(options.dataDir, recovery, identityCreated, keys.length));

  const simulation = new DevnetSimulation(
    node,
    keys,
    options,
    new Rng(options.seed ^ Date.now()),
    options.events,
    onFatal,
  );
  const startGlobal = simulation.stats.globalNext;
  const startRoads = simulation.stats.roadsFlushed;
  const progress = new ProgressReporter(node, simulation, out, options.logIntervalS);
  const onSignal = () => wakeStop?.();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const limits: Promise<'blocks' | 'duration'>[] = [];
  const timers: NodeJS.Timeout[] = [];
  if (options.durationS > 0) {
    limits.push(
      new Promise((resolve) => timers.push(setTimeout(() => resolve('duration'), options.durationS * 1000))),
    );
  }
  if (options.blocks > 0) {
    limits.push(
      new Promise((resolve) => {
        const check = setInterval(() => {
          if (simulation.stats.globalNext - startGlobal >= options.blocks) resolve('blocks');
        }, 20);
        timers.push(check);
      }),
    );
  }

  simulation.start();
  progress.start();
  const stoppedBy = await Promise.race([stopRequested, ...limits]);
  for (const t of timers) clearTimeout(t);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);

  progress.stop();
  await simulation.stop();
  const closeError = await node.close().then(
    () => undefined,
    (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
  );
  const error = fatal ?? simulation.error ?? closeError;
  const result: DevnetResult = {
    recovery,
    blocksFinalized: simulation.stats.globalNext - startGlobal,
    roads: simulation.stats.roadsFlushed - startRoads,
    stoppedBy: error ? 'error' : stoppedBy,
    ...(error ? { error } : {}),
  };
  say(progress.summary(result.stoppedBy));
  return result;
}

function describeStart(dataDir: string, r: RecoveryReport, created: boolean, lanes: number): string {
  if (r.fresh || created) {
    return `devnet: new data directory ${dataDir} with ${lanes} lanes`;
  }
  const laneBlocks = r.lanes.reduce((sum, l) => sum + (l.next - l.first), 0);
  const tips = r.lanes.map((l) => l.next);
  return [
    `devnet: recovered ${dataDir}`,
    `  prune anchor: ${r.anchorRoad === undefined ? 'none yet' : `road ${r.anchorRoad}`}`,
    `  CommitQCs: roads [${r.commitQCRoads.first}, ${r.commitQCRoads.next})`,
    `  lanes: ${r.lanes.length}, ${laneBlocks} durable blocks above the anchor, tips ${Math.min(...tips)}..${Math.max(...tips)}`,
    `  block store: blocks [${r.blocks.first}, ${r.blocks.next}), prune floor ${r.blocks.floor}`,
    `  rewritten from lane WALs: ${r.refetchedBlocks} blocks`,
  ].join('\n');
}
