/**
 * Fills a consensus store the way a node does (every lane's blocks, a CommitQC per round of
 * blocks, an AppQC two roads behind, so the anchor moves), for the restart measurements of
 * `bench/consensus.ts`. Run as a child process (`node --import tsx consensusWriter.ts <dir> <lanes>`)
 * it writes without end and reports, over IPC, how many blocks are durable: the parent SIGKILLs it
 * while it writes and then measures how long the store takes to open.
 */
import { ConsensusPersistence } from '../../src/consensus/persistence.ts';
import { RealFileSystem } from '../../src/io/realFileSystem.ts';
import { ConsensusFixture } from '../../src/testing/consensusFixture.ts';

export const WRITER_SEED = 42;
export const WRITER_BLOCK_BYTES = 4096;

export function writerFixture(lanes: number): ConsensusFixture {
  return new ConsensusFixture({ lanes, seed: WRITER_SEED, payloadBytes: WRITER_BLOCK_BYTES, sign: false });
}

export function openWriterStore(dir: string, f: ConsensusFixture): Promise<ConsensusPersistence> {
  return ConsensusPersistence.open({
    fs: new RealFileSystem(),
    dir,
    committee: f.committee,
    verifySignatures: false,
    blocksPerLane: 1_000_000,
    commitQCWindow: 100_000,
  });
}

/**
 * Writes rounds of one block per lane until `blocks` are durable (or forever without a bound),
 * calling `progress` with the durable count after each round. Each round is followed by its
 * CommitQC, and an AppQC for the road two behind.
 */
export async function fillStore(
  cp: ConsensusPersistence,
  f: ConsensusFixture,
  blocks: number,
  progress?: (durableBlocks: number) => void,
): Promise<void> {
  let durable = 0;
  while (durable < blocks) {
    const waits: Promise<unknown>[] = [];
    for (const lane of f.lanes) {
      const p = f.produceBlock(lane);
      cp.pushBlock(p);
      waits.push(cp.waitVoteable(lane, p.block.header.blockNumber));
    }
    await Promise.all(waits);
    durable += f.lanes.length;
    const qc = f.nextCommitQC();
    cp.pushCommitQC(qc);
    if (qc.roadIndex >= 2) {
      const a = f.commitQC(qc.roadIndex - 2);
      cp.pushAppQC(f.appQC(a), a);
    }
    progress?.(durable);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [dir, lanesArg] = process.argv.slice(2);
  const f = writerFixture(Number(lanesArg));
  const cp = await openWriterStore(dir!, f);
  await fillStore(cp, f, Number.POSITIVE_INFINITY, (durableBlocks) => process.send?.({ durableBlocks }));
}
