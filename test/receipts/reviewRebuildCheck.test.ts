// Review (rrev2): a hot tier rebuilt at open (layout 3 empties every older tier, and a lost or
// deleted tier is rebuilt the same way) re-reads the archive files whose blocks the WAL no longer
// holds. Open checks only the size of those files, so the engine parsed them before their checksum
// was ever compared with the manifest's: a Parquet reader handed damaged bytes may return altered
// values, which then go into the tx-hash and block-hash indexes as if they were the chain's. Fails on
// 8322612 (the engine reads files [0..3] and [4..7] with none of their bytes checked first; with one
// of them damaged, the open succeeds).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FileHandle, FileSystem, OpenOptions } from '../../src/io/fileSystem.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { MemoryKv } from '../../src/testing/memoryKv.ts';
import type { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { makeBlock } from './support/fixtures.ts';
import { simSetup } from './support/harness.ts';
import { MemoryArchive } from './support/memoryArchive.ts';

/** `fs` that counts the bytes the store reads from each file through it. */
function readCountingFs(fs: FileSystem): { fs: FileSystem; bytesRead: Map<string, number> } {
  const bytesRead = new Map<string, number>();
  const wrapped = new Proxy(fs, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (prop !== 'open') return typeof value === 'function' ? value.bind(target) : value;
      return (file: string, options?: OpenOptions): FileHandle => {
        const handle = target.open(file, options);
        return new Proxy(handle, {
          get(h, key, r) {
            const v = Reflect.get(h, key, r);
            if (key !== 'read') return typeof v === 'function' ? v.bind(h) : v;
            return (buf: Uint8Array, bufOffset: number, length: number, position: number): number => {
              const n = handle.read(buf, bufOffset, length, position);
              bytesRead.set(file, (bytesRead.get(file) ?? 0) + n);
              return n;
            };
          },
        });
      };
    },
  });
  return { fs: wrapped, bytesRead };
}

/** The model engine, reading through the raw simulated disk; records what it was asked to parse. */
class RecordingArchive extends MemoryArchive {
  readonly parsedUnchecked: string[] = [];
  readonly parsed: string[] = [];
  constructor(
    private readonly sim: SimulatedFileSystem,
    private readonly storeReads: Map<string, number>,
  ) {
    super(sim);
  }
  // (The engine interface passes both paths; the model's own signature names only the first.)
  override async readBlocks(receiptsPath: string, logsPath?: string) {
    this.parsed.push(receiptsPath);
    for (const p of [receiptsPath, logsPath ?? receiptsPath.replace(/receipts_/, 'logs_')]) {
      const size = this.sim.stat(p).size;
      if ((this.storeReads.get(p) ?? 0) < size) this.parsedUnchecked.push(p);
    }
    return super.readBlocks(receiptsPath);
  }
}

async function archivedStore(seed: number) {
  const sim = simSetup(seed);
  const store = await sim.open({ blocksPerFile: 4 });
  for (let n = 0; n < 14; n++) await store.putBlock(makeBlock(seed * 1000 + n, n));
  await store.pruneBelow(0); // windows [0..3], [4..7], [8..11] archived; the WAL keeps 8.. on
  const files = store.archiveFiles();
  assert.deepEqual(
    files.map((f) => f.entry.first),
    [0, 4, 8],
  );
  await store.close();
  return { sim, files };
}

test('a hot tier rebuilt at open parses no archive file before checking it against the manifest', async () => {
  const { sim } = await archivedStore(7);
  const counting = readCountingFs(sim.fs);
  const engine = new RecordingArchive(sim.fs, counting.bytesRead);
  // A new hot tier (as after a layout change, or an operator deleting it): rebuilt from the floor.
  const store = await sim.open({ blocksPerFile: 4, fs: counting.fs, kv: new MemoryKv(), archive: engine });
  assert.ok(engine.parsed.length >= 2, `the rebuild read the archive (${engine.parsed.join(', ')})`);
  assert.deepEqual(engine.parsedUnchecked, [], 'every file was checksummed before the engine parsed it');
  assert.equal(store.ranges().latest, 13);
  await store.close();
});

test('a damaged archive file needed by the rebuild fails the open with CORRUPT, naming it', async () => {
  const { sim, files } = await archivedStore(8);
  // One flipped bit in the middle window's receipts file, size unchanged.
  sim.fs.flipBit(files[1]!.receiptsPath, 40, 3);
  sim.fs.makeEverythingDurable();
  await assert.rejects(
    sim.open({ blocksPerFile: 4, kv: new MemoryKv() }),
    (err: unknown) => isCairnError(err, 'CORRUPT') && /blocks 4\.\.7/.test((err as Error).message),
  );
});

// The same for a file a prune retires: its tx hashes are read (to drop their index entries) from a
// file that no open ever checked. Fails on 8322612: the model engine's decode error latched the
// store on the prune, and every later write failed with it.
test('a prune past a damaged archive file retires it without parsing it, and the store keeps working', async () => {
  const { sim, files } = await archivedStore(9);
  sim.fs.flipBit(files[0]!.receiptsPath, 40, 5);
  sim.restartKv();
  const store = await sim.open({ blocksPerFile: 4 });
  assert.equal(await store.pruneBelow(4), 4);
  assert.equal(sim.fs.exists(files[0]!.receiptsPath), false, 'the damaged file is gone');
  // Its transactions are below the floor: PRUNED (their index entries were left), never a wrong answer.
  const b0 = makeBlock(9 * 1000, 0);
  assert.ok(b0.receipts.length > 0);
  for (const r of b0.receipts) {
    await assert.rejects(store.getReceipt(r.txHash), (err: unknown) => isCairnError(err, 'PRUNED'));
  }
  // The store was not latched: writes and reads go on.
  await store.putBlock(makeBlock(9 * 1000 + 14, 14));
  assert.equal(store.ranges().latest, 14);
  const b5 = makeBlock(9 * 1000 + 5, 5);
  for (const r of b5.receipts) assert.equal((await store.getReceipt(r.txHash))?.blockNumber, 5);
  await store.close();
});
