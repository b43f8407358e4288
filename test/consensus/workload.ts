/**
 * The persist-loop workload shared by the crash and fault-injection suites, with its recovery check.
 * Deterministic for a seed: a fixture of LANES lanes, blocks of random counts per road, CommitQCs
 * finalizing up to 3 blocks per lane, AppQCs racing the persist loop, small segments.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { MAX_CONSENSUS_RECORD_BYTES } from '../../src/consensus/logOpener.ts';
import { BLOCKS_DIR, COMMITQCS_DIR, ConsensusPersistence } from '../../src/consensus/persistence.ts';
import {
  decodeSignedLaneProposal,
  encodeCommitQC,
  encodeSignedLaneProposal,
} from '../../src/domain/codecs.ts';
import { laneRangeOf } from '../../src/domain/committee.ts';
import type { LaneId } from '../../src/domain/types.ts';
import { bytesEqual } from '../../src/lib/bytes.ts';
import { Rng } from '../../src/lib/rng.ts';
import { ConsensusFixture } from '../../src/testing/consensusFixture.ts';
import type { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { Wal } from '../../src/wal/wal.ts';
import type { CrashScenario } from '../support/crashHarness.ts';
import { ROOT } from './helpers.ts';

export interface Acks {
  fixture: ConsensusFixture;
  /** Highest block number reported 'durable' per lane (all below it too). */
  voteable: Map<LaneId, number>;
  publishedRoad: number;
  anchorRoad: number;
  /** The fatal error the store latched during the run, if any. */
  failure?: Error | undefined;
  /** Why the last close failed (a close writes too: the WAL's clean-close marker). */
  closeFailure?: unknown;
  /** The store of the last run (for post-failure assertions). */
  cp?: ConsensusPersistence;
}

export const LANES = 3;

/**
 * How the lane and CommitQC logs are configured: 'test' grows segments by appending (the suites'
 * historical setting); 'production' is what a node runs (WalLogOpener's defaults: preallocated
 * segments and the always-ready spare renamed into place), with the same small segments so they roll.
 */
export type WalConfig = 'test' | 'production';

export function options(fs: SimulatedFileSystem, f: ConsensusFixture, wal: WalConfig = 'test') {
  return {
    fs,
    dir: ROOT,
    committee: f.committee,
    verifySignatures: false,
    segmentBytes: 1024,
    preallocate: wal === 'production',
    blocksPerLane: 12,
  };
}

export function persistLoopScenario(roads = 7, wal: WalConfig = 'test'): CrashScenario<Acks> {
  return {
    name: `consensus persist loop (${wal} WAL configuration)`,
    start(seed) {
      return {
        fixture: new ConsensusFixture({ lanes: LANES, seed, payloadBytes: 100, sign: false }),
        voteable: new Map(),
        publishedRoad: -1,
        anchorRoad: -1,
      };
    },
    async run(fs, acks) {
      acks.failure = undefined;
      acks.closeFailure = undefined;
      const f = acks.fixture;
      const rng = new Rng(f.committee.members[0]!.charCodeAt(3) * 7919);
      const cp = await ConsensusPersistence.open({
        ...options(fs, f, wal),
        onFatal: (e) => (acks.failure = e),
      });
      acks.cp = cp;
      cp.subscribeCommitQC((qc) => {
        acks.publishedRoad = Math.max(acks.publishedRoad, qc.roadIndex);
      });
      const waits: Promise<unknown>[] = [];
      const track = (p: Promise<unknown>) => {
        p.catch(() => undefined); // after a crash they all reject; the run stops at the next await
        waits.push(p);
      };
      try {
        for (let r = 0; r < roads; r++) {
          for (const lane of f.lanes) {
            const count = rng.int(0, 3);
            for (let i = 0; i < count; i++) {
              const b = f.produceBlock(lane);
              cp.pushBlock(b);
              const n = b.block.header.blockNumber;
              track(
                cp.waitVoteable(lane, n).then((status) => {
                  if (status === 'durable')
                    acks.voteable.set(lane, Math.max(acks.voteable.get(lane) ?? -1, n));
                }),
              );
            }
          }
          await new Promise<void>((resolve) => setImmediate(resolve));
          const qc = f.nextCommitQC({ maxPerLane: rng.int(1, 4) });
          cp.pushCommitQC(qc);
          if (r >= 2 && rng.bool(0.6)) {
            const a = f.commitQC(r - 1);
            if (cp.pushAppQC(f.appQC(a), a)) {
              track(
                cp
                  .waitAnchorDurable(a.roadIndex)
                  .then((x) => (acks.anchorRoad = Math.max(acks.anchorRoad, x.commitQC.roadIndex))),
              );
            }
          }
          if (rng.bool(0.5)) await Promise.all(waits);
        }
        await Promise.all(waits);
        await cp.waitCommitQC(f.commitQCs.length - 1);
      } finally {
        await cp.close().catch((err: unknown) => {
          acks.closeFailure = err;
        });
      }
    },
    async check(image, acks) {
      const f = acks.fixture;
      const cp = await ConsensusPersistence.open(options(image, f, wal));
      let anchorRoad = -1;
      const anchorFirsts = new Map<LaneId, number>();
      try {
        const anchor = cp.durableAnchor();
        anchorRoad = anchor?.commitQC.roadIndex ?? -1;
        assert.ok(
          anchorRoad >= acks.anchorRoad,
          `anchor road ${anchorRoad} < acknowledged ${acks.anchorRoad}`,
        );
        const last = cp.lastCommitQC()?.roadIndex ?? -1;
        assert.ok(last >= acks.publishedRoad, `latest CommitQC ${last} < published ${acks.publishedRoad}`);
        for (let r = Math.max(anchorRoad, 0); r <= last; r++) {
          const qc = cp.commitQC(r);
          assert.ok(
            qc && bytesEqual(encodeCommitQC(qc), encodeCommitQC(f.commitQC(r))),
            `CommitQC ${r} missing or different`,
          );
        }
        for (const lane of f.lanes) {
          const anchorFirst = anchor ? laneRangeOf(anchor.commitQC, lane).first : 0;
          anchorFirsts.set(lane, anchorFirst);
          // Asked for directly, blocks below the anchor are gone (not only firstBlock's claim).
          for (let n = Math.max(0, anchorFirst - 4); n < anchorFirst; n++) {
            assert.equal(
              cp.block(lane, n),
              undefined,
              `lane block ${n} below the anchor (${anchorFirst}) came back`,
            );
          }
          assert.equal(cp.firstBlock(lane), anchorFirst, 'nothing below the durable anchor comes back');
          const next = cp.nextBlock(lane);
          for (let n = anchorFirst; n < next; n++) {
            const b = cp.block(lane, n);
            assert.ok(
              b && bytesEqual(encodeSignedLaneProposal(b), encodeSignedLaneProposal(f.block(lane, n))),
              `lane block ${n} wrong`,
            );
          }
          const acked = acks.voteable.get(lane) ?? -1;
          assert.ok(
            acked < anchorFirst || acked < next,
            `lane ${lane.slice(0, 8)}: voteable block ${acked} lost (recovered [${anchorFirst}, ${next}))`,
          );
        }
      } finally {
        await cp.close();
      }
      await checkLogsOnDisk(image, anchorRoad, anchorFirsts);
    },
  };
}

/**
 * What the store left on disk, read with the WAL alone (read-only, no store code): every lane log
 * starts at or above the anchor's lane first and its first record is the block its index names; the
 * CommitQC log starts at or above the anchor's road. The startup prune is not lazy, so nothing below
 * the anchor may remain.
 */
async function checkLogsOnDisk(
  image: SimulatedFileSystem,
  anchorRoad: number,
  anchorFirsts: ReadonlyMap<LaneId, number>,
): Promise<void> {
  for (const [lane, anchorFirst] of anchorFirsts) {
    const dir = path.posix.join(ROOT, BLOCKS_DIR, lane);
    if (!image.exists(dir)) continue;
    const log = await Wal.open({
      fs: image,
      dir,
      readOnly: true,
      maxRecordBytes: MAX_CONSENSUS_RECORD_BYTES,
    });
    try {
      assert.ok(
        log.firstIndex >= anchorFirst,
        `lane ${lane.slice(0, 8)}: the log on disk still starts at block ${log.firstIndex}, below the anchor's ${anchorFirst}`,
      );
      if (log.nextIndex > log.firstIndex) {
        const first = decodeSignedLaneProposal(log.read(log.firstIndex));
        assert.equal(
          first.block.header.blockNumber,
          log.firstIndex,
          'first lane record is not the block its index names',
        );
      }
    } finally {
      await log.close();
    }
  }
  const qcDir = path.posix.join(ROOT, COMMITQCS_DIR);
  if (anchorRoad >= 0 && image.exists(qcDir)) {
    const log = await Wal.open({
      fs: image,
      dir: qcDir,
      readOnly: true,
      maxRecordBytes: MAX_CONSENSUS_RECORD_BYTES,
    });
    try {
      assert.ok(
        log.firstIndex >= anchorRoad,
        `CommitQC log on disk starts at road ${log.firstIndex} < anchor ${anchorRoad}`,
      );
    } finally {
      await log.close();
    }
  }
}
