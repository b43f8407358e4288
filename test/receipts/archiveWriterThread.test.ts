// The archive writer thread (DuckDB on a worker thread, archiveWriterThread.ts): staged and
// unstaged windows give the same files; a failed staging (memory only) is retried once from the
// window's WAL entries; every other failure — an engine error, a damaged entry given from the WAL,
// the thread dying — is a typed fatal error that poisons the receipt store, whose close() still
// returns.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { isCairnError } from '../../src/lib/errors.ts';
import { encodeBlockEntry, normalizeBlock } from '../../src/receipts/codec.ts';
import { DuckDbArchive } from '../../src/receipts/duckdbArchive.ts';
import { ReceiptStore } from '../../src/receipts/receiptStore.ts';
import type { BlockEntry } from '../../src/receipts/types.ts';
import { makeBlock } from './support/fixtures.ts';
import { withTempDir } from './support/harness.ts';

const SEED = 7;
const entriesOf = (from: number, to: number): { blocks: BlockEntry[]; entries: Uint8Array[] } => {
  const blocks = Array.from({ length: to - from + 1 }, (_, i) => normalizeBlock(makeBlock(SEED, from + i)));
  return { blocks, entries: blocks.map((b) => encodeBlockEntry(b).payload) };
};
/** The thread inside an engine, to kill it as a crash would. */
const threadOf = (a: DuckDbArchive) =>
  (a as unknown as { writerThread: { worker: { terminate(): Promise<number> } } | undefined }).writerThread;

test('staged windows (ahead, in pieces, across a window end) give the same rows as unstaged ones', async () => {
  await withTempDir(async (dir) => {
    const archive = await DuckDbArchive.open();
    try {
      const { blocks, entries } = entriesOf(0, 29);
      // Staged in pieces that cross the end of the first window; the second window is not staged
      // from its start (a gap), so it is written from the entries given.
      archive.stageEntries(0, entries.slice(0, 7));
      archive.stageEntries(7, entries.slice(7, 14));
      let asked = 0;
      const given = (from: number, to: number) => () => {
        asked++;
        return entries.slice(from, to + 1);
      };
      const p = (name: string) => join(dir, name);
      const w1 = await archive.writeWindowEntries(0, 9, given(0, 9), p('r0'), p('l0'));
      assert.equal(asked, 0, 'a staged window does not read its entries');
      archive.stageEntries(20, entries.slice(20, 25));
      const w2 = await archive.writeWindowEntries(10, 19, given(10, 19), p('r1'), p('l1'));
      assert.equal(asked, 1, 'a window staged only in part is written from its entries');
      const w3 = await archive.writeWindow(blocks.slice(20, 30), p('r2'), p('l2'));
      for (const [i, w] of [w1, w2, w3].entries()) {
        const part = blocks.slice(i * 10, i * 10 + 10);
        assert.equal(
          w.receiptRows,
          part.reduce((s, b) => s + b.receipts.length, 0),
        );
        assert.equal(
          w.logRows,
          part.reduce((s, b) => s + b.receipts.reduce((t, r) => t + r.logs.length, 0), 0),
        );
        const back = await archive.readBlocks(p(`r${i}`), p(`l${i}`));
        assert.deepEqual(
          back.map((b) => encodeBlockEntry(b).payload),
          part.map((b) => encodeBlockEntry(b).payload),
          `window ${i} round-trips`,
        );
      }
    } finally {
      await archive.close();
    }
  });
});

test('an engine error and a damaged staged entry are typed fatal errors; the thread keeps serving', async () => {
  await withTempDir(async (dir) => {
    const archive = await DuckDbArchive.open();
    try {
      const { entries } = entriesOf(0, 9);
      await assert.rejects(
        archive.writeWindowEntries(0, 9, () => entries, join(dir, 'missing', 'r'), join(dir, 'missing', 'l')),
        (e) => isCairnError(e, 'IO_FATAL') && e.kind === 'fatal',
      );
      const damaged = entries.map((e) => e.slice());
      const last = damaged[3]!.length - 1; // the entry's CRC
      damaged[3]![last] = damaged[3]![last]! ^ 0xff;
      archive.stageEntries(0, damaged);
      await assert.rejects(
        archive.writeWindowEntries(0, 9, () => damaged, join(dir, 'r'), join(dir, 'l')),
        (e) => isCairnError(e, 'IO_FATAL') && /staging failed|checksum|CRC|corrupt/i.test(e.message),
      );
      // Given intact entries, the same window is written.
      const ok = await archive.writeWindowEntries(0, 9, () => entries, join(dir, 'r'), join(dir, 'l'));
      assert.ok(ok.receiptRows > 0);
    } finally {
      await archive.close();
    }
  });
});

test('a writer thread that dies poisons the store: the rotation fails fatally, later writes fail, close returns', async () => {
  await withTempDir(async (dir) => {
    mkdirSync(dir, { recursive: true });
    const archive = await DuckDbArchive.open();
    const store = await ReceiptStore.open({ dir, blocksPerFile: 8, archive });
    for (let n = 0; n < 5; n++) await store.putBlock(makeBlock(SEED, n));
    const thread = threadOf(archive);
    assert.ok(thread, 'the thread started with the first staged blocks');
    await thread.worker.terminate();
    for (let n = 5; n < 8; n++) await store.putBlock(makeBlock(SEED, n)); // acknowledged: in the WAL
    await assert.rejects(store.waitForArchive(), (e) => isCairnError(e, 'IO_FATAL'));
    await assert.rejects(store.putBlock(makeBlock(SEED, 8)), (e) => isCairnError(e) && e.kind === 'fatal');
    await assert.rejects(store.close(), (e) => isCairnError(e, 'IO_FATAL'));
    // The reopen (a fresh engine) archives the window from the WAL.
    const again = await ReceiptStore.open({ dir, blocksPerFile: 8 });
    try {
      assert.equal(again.ranges().latest, 7);
      assert.equal(again.ranges().archivedThrough, 7);
    } finally {
      await again.close();
    }
  });
});

test('a failed staging is not fatal: the window is written once more from its WAL entries', async () => {
  await withTempDir(async (dir) => {
    const archive = await DuckDbArchive.open();
    try {
      const { entries } = entriesOf(0, 9);
      const damaged = entries.map((e) => e.slice());
      damaged[5]![damaged[5]!.length - 1]! ^= 0xff; // the entry's CRC: staging blocks 0..9 fails
      archive.stageEntries(0, damaged);
      let asked = 0;
      const rows = await archive.writeWindowEntries(
        0,
        9,
        () => {
          asked++;
          return entries;
        },
        join(dir, 'r'),
        join(dir, 'l'),
      );
      assert.equal(asked, 1, 'the entries were asked for once, after the thread found the stage unusable');
      const back = await archive.readBlocks(join(dir, 'r'), join(dir, 'l'));
      assert.deepEqual(
        back.map((b) => encodeBlockEntry(b).payload),
        entries,
        'the files hold the intact entries',
      );
      assert.equal(
        rows.receiptRows,
        back.reduce((s, b) => s + b.receipts.length, 0),
      );
    } finally {
      await archive.close();
    }
  });
});

test('a receipt store whose writer thread fails to stage a batch archives the window anyway (error injection)', async () => {
  await withTempDir(async (dir) => {
    mkdirSync(dir, { recursive: true });
    const archive = await DuckDbArchive.open();
    // The third staged batch reaches the thread damaged (as a failed append would leave the stage).
    let batches = 0;
    const stage = archive.stageEntries.bind(archive);
    archive.stageEntries = (first, entries) => {
      batches++;
      if (batches !== 3) return stage(first, entries);
      const copy = entries.map((e) => e.slice());
      copy[0]![copy[0]!.length - 1]! ^= 0xff;
      stage(first, copy);
    };
    const store = await ReceiptStore.open({ dir, blocksPerFile: 8, archive });
    try {
      for (let n = 0; n < 20; n++) await store.putBlock(makeBlock(SEED, n));
      await store.waitForArchive();
      assert.ok(batches >= 3, `the injected failure ran (${batches} batches staged)`);
      assert.equal(store.ranges().archivedThrough, 15);
      assert.deepEqual((await store.verify()).problems, []);
      await store.putBlock(makeBlock(SEED, 20)); // not poisoned
    } finally {
      await store.close();
    }
    const again = await ReceiptStore.open({ dir, blocksPerFile: 8 });
    try {
      assert.deepEqual((await again.verify()).problems, []);
      assert.equal(again.ranges().latest, 20);
    } finally {
      await again.close();
    }
  });
});
