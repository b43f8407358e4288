// The check of an archive file before its first read (receiptStore.checkBeforeRead,
// archiveFileCheck.ts): it runs before the engine touches the file, reads the file in pieces across
// event-loop turns instead of holding the loop for the whole file, is shared by concurrent first
// reads, keeps a mismatch CORRUPT, and lets a read after an I/O failure check again.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FileHandle } from '../../src/io/fileSystem.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import type { ArchiveEngine } from '../../src/receipts/archiveEngine.ts';
import type { ReceiptStore } from '../../src/receipts/receiptStore.ts';
import { expectedLogs, logKeys, makeBlock } from './support/fixtures.ts';
import { simSetup } from './support/harness.ts';

const BLOCKS = Array.from({ length: 16 }, (_, n) => makeBlock(73, n, { maxReceipts: 8 }));
/** Files of 4 blocks and a hot window of 4: blocks 0..11 are answered by the archive alone. */
const LAYOUT = { blocksPerFile: 4, hotRetentionBlocks: 4 };
/** The store's reads of archive files are cut to this many bytes, as a file system may return short reads. */
const PIECE_BYTES = 512;

interface Probe {
  store: ReceiptStore;
  /** Reads of archive files outside the engine (the store's checks): path and event-loop turn. */
  checkReads: { path: string; turn: number; bytes: number }[];
  /** Event-loop turn of each engine call that reads archive files. */
  engineCalls: number[];
  sim: ReturnType<typeof simSetup>;
  stop(): Promise<void>;
}

/** A store whose archive files were written by a previous open, with reads and turns recorded. */
async function reopened(seed: number): Promise<Probe> {
  let inEngine = false;
  let turn = 0;
  let ticking = true;
  const tick = (): void => {
    turn++;
    if (ticking) setImmediate(tick);
  };
  const engineCalls: number[] = [];
  const sim = simSetup(seed, (inner) => {
    const wrapped = Object.create(inner) as ArchiveEngine;
    const during =
      <A extends unknown[], R>(fn: (...a: A) => R) =>
      (...a: A): R => {
        engineCalls.push(turn);
        inEngine = true;
        try {
          return fn.apply(inner, a);
        } finally {
          inEngine = false;
        }
      };
    wrapped.queryLogs = during(inner.queryLogs);
    wrapped.readReceipt = during(inner.readReceipt);
    return wrapped;
  });
  const first = await sim.open(LAYOUT);
  for (const b of BLOCKS) await first.putBlock(b);
  await first.close();
  sim.restartKv();
  const store = await sim.open(LAYOUT);
  assert.equal(store.ranges().hotFloor, 12);
  engineCalls.length = 0;
  const checkReads: Probe['checkReads'] = [];
  const open = sim.fs.open.bind(sim.fs);
  sim.fs.open = (path, options) => {
    const h = open(path, options);
    if (!path.includes('/archive/') || path.includes('MANIFEST')) return h;
    const read = h.read.bind(h);
    (h as { read: FileHandle['read'] }).read = (buf, off, length, pos) => {
      if (inEngine) return read(buf, off, length, pos); // the model engine reads whole files
      const n = read(buf, off, Math.min(length, PIECE_BYTES), pos);
      checkReads.push({ path, turn, bytes: n });
      return n;
    };
    return h;
  };
  setImmediate(tick);
  return {
    store,
    checkReads,
    engineCalls,
    sim,
    stop: async () => {
      ticking = false;
      await store.close();
    },
  };
}

const bytesOf = (p: Probe, name: string): number =>
  p.checkReads.filter((r) => r.path.endsWith(name)).reduce((s, r) => s + r.bytes, 0);

test('a first archive read checks the whole file pair over many event-loop turns, before the engine reads it, and only once', async () => {
  const p = await reopened(1);
  try {
    const logs = await p.store.getLogs({ fromBlock: 0, toBlock: 3 });
    assert.deepEqual(logKeys(logs), logKeys(expectedLogs(BLOCKS, {}, 0, 3)));
    const size = (name: string): number => p.sim.fs.stat(`/r/archive/${name}`).size;
    // Every byte of both files was read by the check, and nothing of the files not queried.
    assert.equal(bytesOf(p, 'receipts_0_3.parquet'), size('receipts_0_3.parquet'));
    assert.equal(bytesOf(p, 'logs_0_3.parquet'), size('logs_0_3.parquet'));
    assert.equal(bytesOf(p, 'receipts_4_7.parquet'), 0);
    const pieces = p.checkReads.length;
    assert.ok(pieces > 4, `the receipts file is read in ${pieces} pieces`);
    // A synchronous check reads the whole file within one turn; this one lets the loop run between reads.
    const turns = new Set(p.checkReads.map((r) => r.turn));
    assert.ok(turns.size > pieces / 2, `${pieces} reads in ${turns.size} event-loop turns`);
    // The engine was called once, after the last read of the check.
    assert.equal(p.engineCalls.length, 1);
    assert.ok(p.engineCalls[0]! >= Math.max(...turns));
    // Files already checked are not read again; the receipt path shares the check.
    await p.store.getArchivedLogs({ fromBlock: 0, toBlock: 3 });
    const tx = BLOCKS.slice(0, 4).find((b) => b.receipts.length > 0)!.receipts[0]!;
    assert.ok(await p.store.getReceipt(tx.txHash));
    assert.equal(p.checkReads.length, pieces);
  } finally {
    await p.stop();
  }
});

test('concurrent first reads of a file share one check', async () => {
  const p = await reopened(2);
  try {
    const results = await Promise.all([
      p.store.getLogs({ fromBlock: 4, toBlock: 7 }),
      p.store.getArchivedLogs({ fromBlock: 4, toBlock: 11 }),
      p.store.getLogs({ fromBlock: 5, toBlock: 6 }),
    ]);
    assert.deepEqual(logKeys(results[1]), logKeys(expectedLogs(BLOCKS, {}, 4, 11)));
    const size = (name: string): number => p.sim.fs.stat(`/r/archive/${name}`).size;
    assert.equal(bytesOf(p, 'receipts_4_7.parquet'), size('receipts_4_7.parquet'));
    assert.equal(bytesOf(p, 'receipts_8_11.parquet'), size('receipts_8_11.parquet'));
  } finally {
    await p.stop();
  }
});

test('a damaged file stays CORRUPT and is never handed to the engine; other files still answer', async () => {
  const p = await reopened(3);
  try {
    const path = '/r/archive/receipts_4_7.parquet';
    const h = p.sim.fs.open(path);
    const byte = new Uint8Array(1);
    h.read(byte, 0, 1, 40);
    byte[0]! ^= 0x01;
    h.writev([byte], 40);
    h.sync();
    h.close();
    for (let i = 0; i < 2; i++) {
      await assert.rejects(p.store.getLogs({ fromBlock: 4, toBlock: 7 }), (e) => isCairnError(e, 'CORRUPT'));
    }
    await assert.rejects(p.store.getArchivedLogs({ fromBlock: 0, toBlock: 11 }), (e) =>
      isCairnError(e, 'CORRUPT'),
    );
    assert.equal(p.engineCalls.length, 0);
    assert.deepEqual(
      logKeys(await p.store.getLogs({ fromBlock: 8, toBlock: 15 })),
      logKeys(expectedLogs(BLOCKS, {}, 8, 15)),
    );
  } finally {
    await p.stop();
  }
});

test('an I/O error while checking fails that read only: the store stays writable and the next read checks again', async () => {
  const p = await reopened(4);
  try {
    const fault = p.sim.fs.injectFault({ op: 'read', nth: 2, error: 'EIO', pathIncludes: 'receipts_0_3' });
    await assert.rejects(p.store.getLogs({ fromBlock: 0, toBlock: 3 }), (e) => isCairnError(e, 'IO_FATAL'));
    assert.equal(fault.firedCount, 1);
    assert.equal(p.engineCalls.length, 0);
    await p.store.putBlock(makeBlock(73, 16));
    assert.deepEqual(
      logKeys(await p.store.getLogs({ fromBlock: 0, toBlock: 3 })),
      logKeys(expectedLogs(BLOCKS, {}, 0, 3)),
    );
    assert.equal(p.engineCalls.length, 1);
  } finally {
    await p.stop();
  }
});
