import { type Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_DATA_DIR, runDevnet } from '../node/devnet.ts';
import type { SimulationEvents } from '../node/devnetSimulation.ts';
import { formatCliError } from './cliError.ts';

function positiveNumber(name: string, { integer = false, allowZero = false } = {}) {
  return (raw: string): number => {
    const v = Number(raw);
    const ok = Number.isFinite(v) && (allowZero ? v >= 0 : v > 0) && (!integer || Number.isInteger(v));
    if (!ok) {
      throw new InvalidArgumentError(
        `${name} must be a ${allowZero ? 'non-negative' : 'positive'} ${integer ? 'integer' : 'number'}`,
      );
    }
    return v;
  };
}

/**
 * When the devnet runs as a child with an IPC channel and CAIRN_DEVNET_IPC=1, it reports every fact
 * after it became durable, so a supervisor can SIGKILL it and check that nothing acknowledged is lost.
 */
function ipcEvents(): SimulationEvents | undefined {
  if (process.env.CAIRN_DEVNET_IPC !== '1' || typeof process.send !== 'function') return undefined;
  const send = (msg: unknown) => process.send?.(msg);
  return {
    onVote: (lane, n) => send({ t: 'vote', lane, n }),
    onCommitQCPublished: (qc) => send({ t: 'qc', road: qc.roadIndex }),
    onRoadFlushed: (qc, globalNext) => send({ t: 'flushed', road: qc.roadIndex, globalNext }),
    onAnchorDurable: (road) => send({ t: 'anchor', road }),
  };
}

export function registerDevnetCommand(program: Command): void {
  program
    .command('devnet')
    .description('run a single-process devnet: lanes, durable votes, CommitQCs, block store, pruning')
    .option('--data-dir <dir>', 'data directory (created if missing)', DEFAULT_DATA_DIR)
    .addOption(
      new Option(
        '--lanes <n>',
        'number of lanes (validators); fixed when the directory is created',
      ).argParser(positiveNumber('--lanes', { integer: true })),
    )
    .option('--rate <blocks/s>', 'blocks proposed per second per lane', positiveNumber('--rate'), 25)
    .option(
      '--block-bytes <bytes>',
      'mean block payload size (varies ±50%)',
      positiveNumber('--block-bytes', { integer: true }),
      4096,
    )
    .option(
      '--commit-interval-ms <ms>',
      'how often a CommitQC is formed',
      positiveNumber('--commit-interval-ms'),
      200,
    )
    .option(
      '--app-lag-roads <n>',
      'AppQC for a road after this many more roads are finalized',
      positiveNumber('--app-lag-roads', { integer: true, allowZero: true }),
      2,
    )
    .option(
      '--retain-blocks <n>',
      'block store keeps the newest n blocks (0 = all)',
      positiveNumber('--retain-blocks', { integer: true, allowZero: true }),
      100_000,
    )
    .option(
      '--blocks <n>',
      'stop after this many blocks are finalized (0 = no limit)',
      positiveNumber('--blocks', { integer: true, allowZero: true }),
      0,
    )
    .option(
      '--duration <s>',
      'stop after this many seconds (0 = no limit)',
      positiveNumber('--duration', { allowZero: true }),
      0,
    )
    .option(
      '--seed <n>',
      'seed of a new devnet (keys) and of its payloads',
      positiveNumber('--seed', { integer: true, allowZero: true }),
      1,
    )
    .option(
      '--log-interval <s>',
      'seconds between progress lines when not on a terminal',
      positiveNumber('--log-interval'),
      5,
    )
    .action(async (opts) => {
      const result = await runDevnet({
        dataDir: opts.dataDir,
        lanes: opts.lanes ?? 8,
        lanesExplicit: opts.lanes !== undefined,
        seed: opts.seed,
        ratePerLane: opts.rate,
        blockBytes: opts.blockBytes,
        commitIntervalMs: opts.commitIntervalMs,
        appLagRoads: opts.appLagRoads,
        retainBlocks: opts.retainBlocks,
        blocks: opts.blocks,
        durationS: opts.duration,
        logIntervalS: opts.logInterval,
        ...(ipcEvents() ? { events: ipcEvents()! } : {}),
      });
      if (result.error) {
        process.stderr.write(`devnet failed: ${formatCliError(result.error)}\n`);
        process.exitCode = 1;
      }
      process.disconnect?.();
    });
}
