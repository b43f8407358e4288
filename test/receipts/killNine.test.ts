// Real kill -9: a child writes receipt blocks on the real disk (receipt WAL + classic-level hot tier
// + DuckDB-written Parquet archive) and is killed with SIGKILL at a random moment, over and over on
// the same directory (two directories in parallel). After every kill the parent reopens the store
// and checks: every acknowledged block's receipts are found by hash and its logs by filter, the
// floor never moves back, and nothing below the floor comes back.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isCairnError } from '../../src/lib/errors.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import type { ArchiveEngine } from '../../src/receipts/archiveEngine.ts';
import { DuckDbArchive } from '../../src/receipts/duckdbArchive.ts';
import { ReceiptStore } from '../../src/receipts/receiptStore.ts';
import { bundleTsChild, siblingPath, spawnNodeChild } from '../support/childProcess.ts';
import { ADDRESSES, expectedLogs, logKeys, makeBlock, TOPICS } from './support/fixtures.ts';

const KILLS = 100;
const LANES = 2;

async function killLoop(
  dir: string,
  seed: number,
  kills: number,
  command: string[],
  archive: ArchiveEngine,
  writerScript: string,
): Promise<number> {
  const rng = new Rng(seed ^ kills);
  let acked = -1;
  let floorAcked = 0;
  let done = 0;
  for (let k = 0; k < kills; k++) {
    const child = spawnNodeChild(command, [dir, String(seed), writerScript]);
    await child.waitFor((m) => (m as { type: string }).type === 'opened', 60_000);
    const waitAcks = rng.int(0, 8);
    const seen = (): number => child.messages.filter((m) => (m as { type: string }).type === 'acked').length;
    while (seen() < waitAcks) await new Promise((r) => setTimeout(r, 1));
    await new Promise((r) => setTimeout(r, rng.int(0, 15)));
    await child.kill9();
    done++;
    for (const m of child.messages as { type: string; block?: number; floor?: number }[]) {
      if (m.type === 'acked') acked = Math.max(acked, m.block!);
      if (m.type === 'pruned') floorAcked = Math.max(floorAcked, m.floor!);
    }
    const where = `kill ${k} (seed ${seed}, dir ${dir})`;
    // One DuckDB instance for every check (loading DuckDB per reopen would dominate the runtime).
    const store = await ReceiptStore.open({
      dir,
      blocksPerFile: 16,
      postingBucketBlocks: 5,
      hotRetentionBlocks: 20,
      walSegmentBytes: 64 * 1024,
      archive: { ...bind(archive), close: async () => {} },
    });
    try {
      const r = store.ranges();
      assert.ok(r.latest >= acked, `${where}: latest ${r.latest} < acknowledged ${acked}`);
      assert.ok(r.floor >= floorAcked, `${where}: floor ${r.floor} < acknowledged ${floorAcked}`);
      floorAcked = r.floor;
      const from = Math.max(r.floor, r.latest - 24);
      const blocks = Array.from({ length: r.latest + 1 }, (_, n) =>
        n >= from || n < r.floor ? makeBlock(seed, n) : undefined,
      );
      for (let n = Math.max(0, r.floor - 4); n <= r.latest; n++) {
        const b = blocks[n];
        if (!b) continue;
        for (const rc of b.receipts) {
          if (n < r.floor) {
            // Not found, or PRUNED where the index still places it (a file straddling the floor).
            const got = await store.getReceipt(rc.txHash).catch((e: unknown) => {
              assert.ok(isCairnError(e, 'PRUNED') && e.details?.floor === r.floor, String(e));
              return undefined;
            });
            assert.equal(got, undefined, `${where}: pruned block ${n} came back`);
          } else {
            const got = await store.getReceipt(rc.txHash);
            assert.equal(got?.blockNumber, n, `${where}: receipt ${n}/${rc.txIndex}`);
          }
        }
      }
      if (r.latest >= from) {
        const got = await store.getLogs({ fromBlock: from, toBlock: r.latest });
        const want = expectedLogs(
          blocks.filter((b) => b !== undefined),
          {},
          from,
          r.latest,
        );
        assert.deepEqual(logKeys(got), logKeys(want), `${where}: logs ${from}..${r.latest}`);
        // The same range through the postings (closed buckets in LevelDB, the filling one rebuilt).
        const kept = blocks.filter((b) => b !== undefined);
        for (const f of [{ addresses: [ADDRESSES[0]!, ADDRESSES[3]!] }, { topics: [[TOPICS[1]!]] }]) {
          const byPosting = await store.getLogs({ ...f, fromBlock: from, toBlock: r.latest });
          const wantPosting = expectedLogs(kept, f, from, r.latest);
          assert.deepEqual(logKeys(byPosting), logKeys(wantPosting), `${where}: filtered logs`);
        }
      }
      if (r.floor > 0) {
        await assert.rejects(store.getLogs({ fromBlock: r.floor - 1, toBlock: r.floor }), (e) =>
          isCairnError(e, 'PRUNED'),
        );
      }
      acked = r.latest;
    } finally {
      await store.close();
    }
  }
  return done;
}

test(`receipt store survives ${KILLS} real kill -9s with acknowledged blocks intact`, {
  timeout: 300_000,
}, async () => {
  const seed = seedFromEnv();
  console.log('seed', seed);
  const { command } = await bundleTsChild(siblingPath(import.meta.url, './support/killChild.ts'));
  // The bundled child has no TypeScript beside it: its archive writer thread runs a bundle too.
  const writer = await bundleTsChild(
    siblingPath(import.meta.url, '../../src/receipts/archiveWriterWorker.ts'),
  );
  const writerScript = writer.command.length === 1 ? writer.command[0]! : '';
  const archive = await DuckDbArchive.open();
  const dirs = Array.from({ length: LANES }, () => mkdtempSync(join(tmpdir(), 'cairn-receipts-kill9-')));
  try {
    const t = performance.now();
    const counts = await Promise.all(
      dirs.map((d, i) => killLoop(d, seed + i, Math.ceil(KILLS / LANES), command, archive, writerScript)),
    );
    const total = counts.reduce((a, b) => a + b, 0);
    console.log(`kills ${total} in ${Math.round(performance.now() - t)} ms`);
    assert.ok(total >= KILLS);
  } finally {
    await archive.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});

function bind(a: ArchiveEngine): ArchiveEngine {
  return {
    writeWindow: a.writeWindow.bind(a),
    ...(a.stageEntries ? { stageEntries: a.stageEntries.bind(a) } : {}),
    ...(a.writeWindowEntries ? { writeWindowEntries: a.writeWindowEntries.bind(a) } : {}),
    queryLogs: a.queryLogs.bind(a),
    readReceipt: a.readReceipt.bind(a),
    readTxHashes: a.readTxHashes.bind(a),
    readBlocks: a.readBlocks.bind(a),
    close: a.close.bind(a),
  };
}
