/**
 * Real kill -9: ≥ 200 SIGKILLs of child processes that append to a WAL on the real disk and report
 * every resolved sync over IPC. After each kill the parent reopens the directory and checks that
 * every acknowledged record is present byte-identical and that the log is a contiguous prefix of
 * what the child appended (record i's payload is a pure function of the directory seed and i), and
 * that front truncations done by the child never come undone.
 * Two children run at a time over a pool of directories that accumulate history across kills.
 * SIGKILL keeps the page cache, so this proves process-crash safety and real-I/O integration;
 * power loss is the simulated suites' job.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { realFileSystem } from '../../src/io/realFileSystem.ts';
import { bytesEqual } from '../../src/lib/bytes.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { Wal } from '../../src/wal/wal.ts';
import { bundleTsChild, killAllChildren, siblingPath, spawnNodeChild } from '../support/childProcess.ts';
import { WAL_CHILD_SEGMENT_BYTES, walChildPayload } from '../support/walChildPayload.ts';

const KILLS = Number(process.env.CAIRN_KILL9_COUNT ?? 200);
const LANES = 2;
const DIRS = 12;
const CHILD = siblingPath(import.meta.url, '../support/walChild.ts');
const root = mkdtempSync(join(tmpdir(), 'cairn-kill9-'));
after(() => {
  killAllChildren();
  rmSync(root, { recursive: true, force: true });
});

interface DirState {
  dir: string;
  dirSeed: number;
  /** Highest `next` any child acknowledged for this directory. */
  ackedNext: number;
  /** First index seen by the last verification: it may only grow (pruned records never return). */
  first: number;
  busy: boolean;
}

type ChildMessage = { type: 'ready'; first: number; next: number } | { type: 'acked'; next: number };

async function verify(d: DirState, where: string): Promise<{ next: number }> {
  const wal = await Wal.open({ fs: realFileSystem, dir: d.dir, segmentBytes: WAL_CHILD_SEGMENT_BYTES });
  try {
    assert.ok(
      wal.firstIndex >= d.first,
      `${where}: first index went back from ${d.first} to ${wal.firstIndex}`,
    );
    assert.ok(
      wal.firstIndex <= d.ackedNext,
      `${where}: first index ${wal.firstIndex} beyond the acked ${d.ackedNext}`,
    );
    d.first = wal.firstIndex;
    assert.ok(
      wal.nextIndex >= d.ackedNext,
      `${where}: acknowledged records lost: recovered up to ${wal.nextIndex}, acked up to ${d.ackedNext}`,
    );
    for (const { index, payload } of wal.iterate()) {
      assert.ok(bytesEqual(payload, walChildPayload(d.dirSeed, index)), `${where}: record ${index} differs`);
    }
    wal.verify();
    return { next: wal.nextIndex };
  } finally {
    await wal.close();
  }
}

test(`WAL: ${KILLS} SIGKILLs of appending children lose no acknowledged record`, async () => {
  const seed = seedFromEnv();
  console.log('seed', seed);
  const rng = new Rng(seed);
  const dirs: DirState[] = Array.from({ length: DIRS }, (_, i) => ({
    dir: join(root, `d${i}`),
    dirSeed: rng.nextU32(),
    ackedNext: 0,
    first: 0,
    busy: false,
  }));
  const childCommand = (await bundleTsChild(CHILD)).command;
  const started = Date.now();
  let kills = 0;
  let ackMessages = 0;
  let killedBeforeFirstAck = 0;

  const cycle = async (n: number): Promise<void> => {
    const d =
      dirs.find((x) => !x.busy && dirs.indexOf(x) % LANES === n % LANES) ?? dirs.find((x) => !x.busy)!;
    d.busy = true;
    try {
      const delayMs = rng.int(5, 200);
      const where = `kill ${n} of ${d.dir} after ${delayMs} ms (CAIRN_SEED=${seed})`;
      // The baseline is taken before the child exists: from the spawn on, this run's acks may be
      // delivered at any time (even before 'ready' is handled), and none of them may count in it.
      const ackedBefore = d.ackedNext;
      const child = spawnNodeChild(childCommand, [d.dir, String(d.dirSeed), String(rng.nextU32())]);
      let recoveredNext = -1;
      try {
        const ready = await child.waitFor<ChildMessage>((m: unknown) => (m as ChildMessage).type === 'ready');
        assert.ok(ready.type === 'ready');
        recoveredNext = ready.next;
        assert.ok(
          ready.next >= ackedBefore,
          `${where}: the child recovered [${ready.first}, ${ready.next}) but ${ackedBefore} were acknowledged`,
        );
        await new Promise((r) => setTimeout(r, delayMs));
        assert.equal(child.child.exitCode, null, `${where}: the child died on its own (see its stderr)`);
      } finally {
        // Whatever happened, never leave a child running.
        await child.kill9();
      }
      const exit = await child.exited;
      assert.equal(exit.signal, 'SIGKILL', `${where}: the child exited on its own (code ${exit.code})`);
      // 'close' has fired: every message the child sent is in `child.messages`, in order. Account
      // for this run's acks from that list, not from a listener racing the bookkeeping above.
      const acks = (child.messages as ChildMessage[]).filter((m) => m.type === 'acked');
      let previous = recoveredNext; // an ack covers at least what the child recovered
      for (const ack of acks) {
        assert.ok(
          ack.next >= previous,
          `${where}: ack of next ${ack.next} after ${previous} (acks went backwards)`,
        );
        previous = ack.next;
      }
      const lastAck = acks.at(-1);
      if (lastAck !== undefined && lastAck.next > d.ackedNext) d.ackedNext = lastAck.next;
      ackMessages += acks.length;
      if (acks.length === 0) killedBeforeFirstAck++;
      kills++;
      await verify(d, where);
    } finally {
      d.busy = false;
    }
  };

  let next = 0;
  let failed = false;
  const lane = async (): Promise<void> => {
    try {
      while (next < KILLS && !failed) await cycle(next++);
    } catch (err) {
      failed = true; // stop the other lane too
      throw err;
    }
  };
  await Promise.all(Array.from({ length: LANES }, lane));
  const totalAcked = dirs.reduce((s, d) => s + d.ackedNext, 0);
  console.log(
    `kill -9: ${kills} kills in ${Date.now() - started} ms, ${ackMessages} ack messages, ` +
      `${totalAcked} acknowledged records verified, ${killedBeforeFirstAck} kills before the first ack`,
  );
  assert.equal(kills, KILLS);
  assert.ok(totalAcked > 0);
});
