// Lane directories of lanes no longer in the committee are reclaimed at open, but only when it is
// safe to decide: a durable prune anchor verified against this committee, and nothing retained
// (the anchor's QC, any retained CommitQC) names the lane. What was removed is logged.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { BLOCKS_DIR, ConsensusPersistence } from '../../src/consensus/persistence.ts';
import { realFileSystem } from '../../src/io/realFileSystem.ts';
import { ConsensusFixture } from '../../src/testing/consensusFixture.ts';

const ORPHAN = 'ab'.repeat(32);

async function writeRoads(dir: string, fx: ConsensusFixture, withAnchor: boolean): Promise<void> {
  const cp = await ConsensusPersistence.open({ fs: realFileSystem, dir, committee: fx.committee });
  try {
    for (const b of fx.produceRound(2)) cp.pushBlock(b);
    for (const lane of fx.lanes) await cp.waitVoteable(lane, 1);
    const q0 = fx.nextCommitQC({ maxPerLane: 1 });
    cp.pushCommitQC(q0);
    await cp.waitCommitQC(0);
    if (withAnchor) {
      cp.pushAppQC(fx.appQC(q0), q0);
      await cp.waitAnchorDurable(0);
    }
  } finally {
    await cp.close();
  }
}

function plantOrphan(dir: string): string {
  const orphan = path.join(dir, BLOCKS_DIR, ORPHAN);
  mkdirSync(orphan, { recursive: true });
  writeFileSync(path.join(orphan, '00000000000000000000.wal'), new Uint8Array(100));
  return orphan;
}

test('an orphan lane directory is reclaimed (and logged) once a verified anchor proves the committee', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cairn-orphan-'));
  try {
    const fx = new ConsensusFixture({ lanes: 4, seed: 61, payloadBytes: 32 });
    await writeRoads(dir, fx, true);
    const orphan = plantOrphan(dir);
    const warnings: string[] = [];
    const cp = await ConsensusPersistence.open({
      fs: realFileSystem,
      dir,
      committee: fx.committee,
      onWarning: (m) => warnings.push(m),
    });
    await cp.close();
    assert.equal(existsSync(orphan), false, 'the orphan directory is gone from disk');
    assert.ok(
      warnings.some((w) => w.includes(ORPHAN.slice(0, 12)) && /removed/.test(w)),
      warnings.join('\n'),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('without a durable anchor an orphan lane directory is left alone (the committee may be wrong)', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cairn-orphan-keep-'));
  try {
    const fx = new ConsensusFixture({ lanes: 4, seed: 62, payloadBytes: 32 });
    await writeRoads(dir, fx, false);
    const orphan = plantOrphan(dir);
    const cp = await ConsensusPersistence.open({ fs: realFileSystem, dir, committee: fx.committee });
    await cp.close();
    assert.equal(existsSync(path.join(orphan, '00000000000000000000.wal')), true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
