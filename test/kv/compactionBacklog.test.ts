// A clean close lets LevelDB finish the compaction it has due (kv/compactionBacklog.ts): the level
// sizes are read from the engine's `leveldb.sstables` text and scored as LevelDB scores them, and the
// wait ends when no level is over its budget. Checked against the table files on disk and against
// what the engine does after a reopen (its LOG).
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ClassicLevelKv } from '../../src/kv/classicLevelKv.ts';
import {
  type CompactingEngine,
  compactionScore,
  parseSstables,
  settleCompaction,
} from '../../src/kv/compactionBacklog.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const seed = seedFromEnv();
console.log(`compactionBacklog seed ${seed} (replay with CAIRN_SEED=${seed})`);

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'cairn-kv-settle-'));
  dirs.push(d);
  return d;
}

const MiB = 1048576;

test('compaction scores follow LevelDB: level 0 by files (4), level n by bytes (10 MiB x 10^(n-1))', () => {
  const levels = (...l: [number, number][]) => l.map(([files, bytes]) => ({ files, bytes }));
  assert.equal(compactionScore(levels([3, 1], [1, 9 * MiB], [1, 99 * MiB])), 0.99);
  assert.equal(compactionScore(levels([4, 1])), 1);
  assert.equal(compactionScore(levels([0, 0], [5, 10 * MiB])), 1);
  assert.equal(compactionScore(levels([0, 0], [0, 0], [0, 0], [9, 1000 * MiB])), 1);
  // Level 6, the last, has no budget.
  assert.equal(compactionScore(levels([0, 0], [0, 0], [0, 0], [0, 0], [0, 0], [0, 0], [9, 1e12])), 0);
  const text = [
    '--- level 0 ---',
    " 12:300['a' @ 5 : 1 .. 'b' @ 9 : 1]",
    '--- level 1 ---',
    '--- level 2 ---',
    " 7:2000['a' @ 1 : 1 .. 'c' @ 2 : 1]",
    " 8:11534336['d' @ 3 : 1 .. 'e' @ 4 : 1]",
  ].join('\n');
  assert.deepEqual(parseSstables(text), [
    { files: 1, bytes: 300 },
    { files: 0, bytes: 0 },
    { files: 2, bytes: 11536336 },
  ]);
});

test('settling flushes first, waits while a level is over budget, and gives up at maxWaitMs', async () => {
  const calls: string[] = [];
  let backlogPolls = 3;
  const engine: CompactingEngine = {
    async flushMemtable() {
      calls.push('flush');
    },
    engineProperty(name) {
      calls.push(name);
      return backlogPolls-- > 0 ? '--- level 0 ---\n 1:1[x]\n 2:1[x]\n 3:1[x]\n 4:1[x]' : '--- level 0 ---';
    },
  };
  const done = await settleCompaction(engine, { maxWaitMs: 5_000, pollMs: 1 });
  assert.equal(done.settled, true);
  assert.deepEqual(calls, ['flush', ...Array(4).fill('leveldb.sstables')]);
  backlogPolls = Number.POSITIVE_INFINITY;
  const stuck = await settleCompaction(engine, { maxWaitMs: 30, pollMs: 5 });
  assert.equal(stuck.settled, false);
  assert.ok(stuck.waitedMs >= 30);
});

test('after settling, the level sizes match the table files on disk and a reopen compacts nothing', async () => {
  const dir = tempDir();
  const rng = new Rng(seed);
  // A 64 KiB memtable and random keys: every few batches a new level-0 table, so the engine keeps
  // a level-0 compaction due while the writes run.
  let kv = await ClassicLevelKv.open(dir, { writeBufferBytes: 64 * 1024 });
  let maxScoreSeen = 0;
  for (let i = 0; i < 400; i++) {
    const b = kv.batch();
    for (let j = 0; j < 40; j++) b.put(rng.bytes(16), rng.bytes(200));
    await b.write({ sync: false });
    maxScoreSeen = Math.max(
      maxScoreSeen,
      compactionScore(parseSstables(kv.engineProperty('leveldb.sstables'))),
    );
  }
  const settled = await settleCompaction(kv, { maxWaitMs: 20_000 });
  assert.equal(settled.settled, true);
  const levels = parseSstables(kv.engineProperty('leveldb.sstables'));
  assert.ok(compactionScore(levels) < 1);
  const onDisk = readdirSync(dir).filter((n) => n.endsWith('.ldb'));
  const tableBytes = onDisk.reduce((sum, n) => sum + statSync(join(dir, n)).size, 0);
  assert.equal(
    levels.reduce((sum, l) => sum + l.files, 0),
    onDisk.length,
  );
  assert.equal(
    levels.reduce((sum, l) => sum + l.bytes, 0),
    tableBytes,
  );
  await kv.close();
  // The memtable was flushed, so the reopen replays an empty log; nothing is due, so the engine's
  // LOG (rewritten at each open) records no compaction after it.
  kv = await ClassicLevelKv.open(dir, { writeBufferBytes: 64 * 1024 });
  await sleep(300);
  const log = readFileSync(join(dir, 'LOG'), 'utf8');
  assert.doesNotMatch(log, /Compacting|Level-0 table/, log);
  await kv.close();
  console.log(
    `highest compaction score seen during the writes: ${maxScoreSeen.toFixed(2)}; settled in ${settled.waitedMs.toFixed(0)} ms`,
  );
});
