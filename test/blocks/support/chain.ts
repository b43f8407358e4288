import { globalRangeOf } from '../../../src/domain/committee.ts';
import type { Block, FullCommitQC } from '../../../src/domain/types.ts';
import { ConsensusFixture } from '../../../src/testing/consensusFixture.ts';

export interface Chain {
  qcs: FullCommitQC[];
  /** blocks[n - first] is global block n. */
  blocks: Block[];
  first: number;
  /** Global range [first, next) of qcs[i]. */
  range(i: number): { first: number; next: number };
  block(n: number): Block;
}

/**
 * A deterministic finalized chain: `cohorts` FullCommitQCs, each finalizing `perLane` blocks on
 * each of `lanes` lanes (cohort size = lanes × perLane), unsigned for speed.
 */
export function makeChain(options: {
  seed: number;
  cohorts: number;
  lanes?: number;
  perLane?: number;
  payloadBytes?: number;
  globalFirst?: number;
}): Chain {
  const lanes = options.lanes ?? 2;
  const perLane = options.perLane ?? 2;
  const fixture = new ConsensusFixture({
    lanes,
    seed: options.seed,
    sign: false,
    payloadBytes: options.payloadBytes ?? 64,
    globalFirst: options.globalFirst ?? 0,
  });
  const qcs: FullCommitQC[] = [];
  const blocks: Block[] = [];
  for (let c = 0; c < options.cohorts; c++) {
    fixture.produceRound(perLane);
    const qc = fixture.nextCommitQC({ maxPerLane: perLane });
    const full = fixture.fullCommitQC(qc);
    qcs.push(full);
    for (const h of full.headers) blocks.push(fixture.block(h.lane, h.blockNumber).block);
  }
  const first = options.globalFirst ?? 0;
  return {
    qcs,
    blocks,
    first,
    range: (i) => globalRangeOf(qcs[i]!.qc),
    block: (n) => {
      const b = blocks[n - first];
      if (b === undefined) throw new Error(`chain has no block ${n}`);
      return b;
    },
  };
}

/** Writes QCs [0, qcCount) and blocks [first, blockNext). */
export function writeChain(
  store: { writeQC(q: FullCommitQC): unknown; writeBlock(n: number, b: Block): unknown },
  chain: Chain,
  qcCount: number,
  blockNext: number,
): void {
  for (let i = 0; i < qcCount; i++) store.writeQC(chain.qcs[i]!);
  for (let n = chain.first; n < blockNext; n++) store.writeBlock(n, chain.block(n));
}
