/**
 * Self-test of the crash harness on a toy append-only log: the correct log passes every crash state;
 * each classic durability bug is caught. A harness that cannot fail would prove nothing.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { readWholeFile, writeFully } from '../../src/io/fileSystem.ts';
import { crc32c } from '../../src/lib/crc32c.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import type { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import {
  type CrashScenario,
  isCrashError,
  isKillError,
  type KillThenCrashScenario,
  POLICIES,
  runCrashSweep,
  runKillThenCrashSweep,
} from '../support/crashHarness.ts';

type Bug = 'none' | 'ack-before-sync' | 'no-dir-sync' | 'no-torn-tail-repair';
const FILE = '/toy/log';

interface ToyState {
  rng: Rng;
  acked: number[];
}

/** Frame: u32 length | u32 crc32c(payload) | payload, where payload is the u32 record number. */
function frame(n: number): Uint8Array {
  const out = new Uint8Array(12);
  const v = new DataView(out.buffer);
  v.setUint32(0, 4, true);
  v.setUint32(8, n, true);
  v.setUint32(4, crc32c(out.subarray(8)), true);
  return out;
}

function recover(fs: SimulatedFileSystem, bug: Bug): number[] {
  if (!fs.exists(FILE)) return [];
  const bytes = readWholeFile(fs, FILE);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: number[] = [];
  for (let at = 0; at + 12 <= bytes.byteLength; at += 12) {
    const ok =
      v.getUint32(at, true) === 4 && crc32c(bytes.subarray(at + 8, at + 12)) === v.getUint32(at + 4, true);
    if (!ok) {
      if (bug === 'no-torn-tail-repair') throw new Error(`bad frame at ${at}`);
      break;
    }
    out.push(v.getUint32(at + 8, true));
  }
  return out;
}

function toyScenario(bug: Bug): CrashScenario<ToyState> {
  return {
    name: `toy-log-${bug}`,
    start: (seed) => ({ rng: new Rng(seed), acked: [] }),
    run: async (fs, state) => {
      fs.mkdir('/toy');
      fs.syncDir('/');
      const h = fs.open(FILE, { create: true });
      if (bug !== 'no-dir-sync') fs.syncDir('/toy');
      let n = 0;
      for (let batch = 0; batch < 6; batch++) {
        const count = state.rng.int(1, 4);
        const first = n;
        for (let i = 0; i < count; i++) writeFully(h, [frame(n++)], first * 12 + i * 12);
        if (bug === 'ack-before-sync') for (let i = first; i < n; i++) state.acked.push(i);
        await h.syncAsync();
        if (bug !== 'ack-before-sync') for (let i = first; i < n; i++) state.acked.push(i);
      }
      h.close();
    },
    check: (image, state) => {
      const got = recover(image, bug);
      for (const [i, v] of got.entries()) assert.equal(v, i, 'not a prefix');
      assert.ok(
        got.length >= state.acked.length,
        `lost acknowledged records: ${got.length} < ${state.acked.length}`,
      );
    },
  };
}

describe('crash harness self-test', () => {
  test('a correct toy log passes every crash point under every policy', async () => {
    const seed = seedFromEnv();
    console.log('seed', seed);
    const r = await runCrashSweep(toyScenario('none'), {
      seed,
      points: { mode: 'every' },
      policies: Object.values(POLICIES),
    });
    assert.equal(r.points, r.mutations);
    assert.equal(r.crashStates, (r.mutations + 1) * Object.keys(POLICIES).length);
  });

  for (const bug of ['ack-before-sync', 'no-dir-sync', 'no-torn-tail-repair'] as const) {
    test(`catches ${bug}`, async () => {
      const seed = seedFromEnv();
      console.log('seed', seed);
      await assert.rejects(
        runCrashSweep(toyScenario(bug), {
          seed,
          points: { mode: 'every' },
          policies: Object.values(POLICIES),
        }),
        (err: unknown) => {
          assert.match(String(err), /crash after mutation .* replay: CAIRN_SEED=/);
          return true;
        },
      );
    });
  }

  test('sampled points include every mutation adjacent to a sync', async () => {
    const seed = seedFromEnv();
    console.log('seed', seed);
    const r = await runCrashSweep(toyScenario('none'), {
      seed,
      points: { mode: 'sample', count: 2, adjacentTo: ['syncAsync'] },
      includeEnd: false,
    });
    // 6 syncs, each contributing itself, the call before and the call after (deduplicated).
    assert.ok(r.points >= 6 * 2 && r.points <= 6 * 3 + 2, `points ${r.points}`);
  });

  test('isKillError follows cause chains', () => {
    const kill = Object.assign(new Error('dead'), { code: 'EKILLED' });
    assert.equal(isKillError(new Error('wrapped', { cause: kill })), true);
    assert.equal(isKillError(Object.assign(new Error('down'), { code: 'ECRASH' })), false);
  });

  test('isCrashError follows cause chains', () => {
    const crash = Object.assign(new Error('down'), { code: 'ECRASH' });
    assert.equal(isCrashError(new Error('wrapped', { cause: crash })), true);
    assert.equal(isCrashError(new Error('other')), false);
  });
});

/**
 * Kill, then power loss, on the toy log: the first process creates the log and is killed before or
 * after it fsyncs the directory; the second reopens the log and appends acknowledged records. A
 * second process that trusts a directory entry it did not create loses them in the power cut.
 */
type KillBug = 'none' | 'reopen-trusts-entry';

function killThenCrashToy(bug: KillBug): KillThenCrashScenario<ToyState> {
  const appendBatches = async (
    h: ReturnType<SimulatedFileSystem['open']>,
    state: ToyState,
    from: number,
    batches: number,
  ): Promise<number> => {
    let n = from;
    for (let batch = 0; batch < batches; batch++) {
      const first = n;
      const count = state.rng.int(1, 4);
      for (let i = 0; i < count; i++) writeFully(h, [frame(n++)], (first + i) * 12);
      await h.syncAsync();
      for (let i = first; i < n; i++) state.acked.push(i);
    }
    return n;
  };
  return {
    name: `toy-log-kill-${bug}`,
    start: (seed) => ({ rng: new Rng(seed), acked: [] }),
    first: async (fs, state) => {
      fs.mkdir('/toy');
      fs.syncDir('/');
      const h = fs.open(FILE, { create: true });
      // Acknowledges nothing before the directory entry is durable.
      let n = 0;
      for (let i = 0; i < 2; i++) writeFully(h, [frame(n++)], i * 12);
      h.sync();
      fs.syncDir('/toy');
      for (let i = 0; i < n; i++) state.acked.push(i);
      await appendBatches(h, state, n, 2);
    },
    second: async (fs, state) => {
      const createdDir = !fs.exists('/toy');
      if (createdDir) fs.mkdir('/toy');
      if (createdDir || bug === 'none') fs.syncDir('/');
      const created = !fs.exists(FILE);
      const h = fs.open(FILE, { create: true });
      // The fix under test: make the entry durable whether or not this process created it.
      if (created || bug === 'none') fs.syncDir('/toy');
      const existing = recover(fs, 'none').length;
      await appendBatches(h, state, existing, 3);
      h.close();
    },
    check: (image, state) => {
      const got = recover(image, 'none');
      for (const [i, v] of got.entries()) assert.equal(v, i, 'not a prefix');
      assert.ok(
        got.length >= state.acked.length,
        `lost acknowledged records: ${got.length} < ${state.acked.length}`,
      );
    },
  };
}

describe('crash harness: kill, then power loss', () => {
  test('a correct reopen passes every kill point, with power cuts in the next process', async () => {
    const seed = seedFromEnv();
    console.log('seed', seed);
    const r = await runKillThenCrashSweep(killThenCrashToy('none'), {
      seed,
      killPoints: { mode: 'every' },
      crashPointsPerKill: 3,
      policies: [POLICIES.random, POLICIES.dropAll, POLICIES.pagesZeroed],
    });
    assert.equal(r.points, r.mutations + 1, 'every mutation of the first process and its end');
    assert.ok(r.crashStates >= r.points * 3, `crash states ${r.crashStates}`);
  });

  test('catches a next process that trusts a directory entry the killed one never fsynced', async () => {
    const seed = seedFromEnv();
    console.log('seed', seed);
    await assert.rejects(
      runKillThenCrashSweep(killThenCrashToy('reopen-trusts-entry'), {
        seed,
        killPoints: { mode: 'every' },
        policies: [POLICIES.dropAll],
      }),
      (err: unknown) => {
        assert.match(
          String(err),
          /first process killed after mutation \d+, then crash after mutation .* replay: CAIRN_SEED=/,
        );
        assert.match(String(err), /lost acknowledged records/);
        return true;
      },
    );
  });
});
