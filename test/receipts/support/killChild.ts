// Child process of killNine.test.ts: opens the receipt store on the real disk (WAL, LevelDB,
// DuckDB/Parquet), continues the deterministic chain from wherever the store stands, and reports
// each acknowledged block and prune to the parent over IPC until it is killed with SIGKILL.
import { DuckDbArchive } from '../../../src/receipts/duckdbArchive.ts';
import { ReceiptStore } from '../../../src/receipts/receiptStore.ts';
import { makeBlock } from './fixtures.ts';

// writerScript: the archive writer thread's bundle, when this child runs bundled.
const [dir, seedText, writerScript] = process.argv.slice(2);
const seed = Number(seedText);
const send = (msg: unknown): Promise<void> => new Promise((resolve) => process.send!(msg, () => resolve()));

const store = await ReceiptStore.open({
  dir: dir!,
  blocksPerFile: 16,
  postingBucketBlocks: 5,
  hotRetentionBlocks: 20,
  walSegmentBytes: 64 * 1024,
  ...(writerScript ? { archive: await DuckDbArchive.open({ writerThreadScript: writerScript }) } : {}),
});
await send({ type: 'opened', ranges: store.ranges() });
for (let n = store.ranges().latest + 1, i = 0; ; n++, i++) {
  // A few blocks in flight at once (group commit), acknowledged in order.
  const group = [n, n + 1, n + 2].map((k) => store.putBlock(makeBlock(seed, k)));
  await Promise.all(group);
  n += 2;
  await send({ type: 'acked', block: n });
  if (i % 9 === 8) {
    const floor = await store.pruneBelow(Math.max(0, n - 40));
    await send({ type: 'pruned', floor });
  }
}
