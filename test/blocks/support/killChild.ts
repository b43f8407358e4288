// Child process of killNine.test.ts: opens the block store on the real disk (Wal + classic-level),
// continues the deterministic chain from wherever the store stands, and reports each acknowledged
// flush / prune to the parent over IPC until it is killed with SIGKILL.
import { openBlockStore } from '../../../src/blocks/openBlockStore.ts';
import { makeChain } from './chain.ts';

const [dir, seedText, cohortsText] = process.argv.slice(2);
const chain = makeChain({ seed: Number(seedText), cohorts: Number(cohortsText), payloadBytes: 2048 });
const send = (msg: unknown): Promise<void> => new Promise((resolve) => process.send!(msg, () => resolve()));

const store = await openBlockStore({ dir: dir!, segmentBytes: 128 * 1024 });
await send({ type: 'opened', ranges: store.ranges() });
let i = chain.qcs.findIndex((_, k) => chain.range(k).first === store.ranges().qcs.next);
if (store.ranges().qcs.next === 0) i = 0;
// Refill blocks the previous run finalized but did not make durable.
for (let n = store.ranges().blocks.next; n < store.ranges().qcs.next; n++)
  store.writeBlock(n, chain.block(n));
for (let round = 0; i >= 0 && i < chain.qcs.length; i++, round++) {
  store.writeQC(chain.qcs[i]!);
  const r = chain.range(i);
  // Every third cohort leaves its last block for the next cohort's flush (QC ahead of blocks).
  const stop = round % 3 === 2 ? r.next - 1 : r.next;
  for (let n = store.ranges().blocks.next; n < stop; n++) store.writeBlock(n, chain.block(n));
  await store.flush();
  await send({ type: 'flushed', blocks: store.ranges().blocks.next, qcs: store.ranges().qcs.next });
  if (round % 7 === 6) {
    const floor = await store.pruneBefore(store.ranges().blocks.next - 6);
    await send({ type: 'pruned', floor });
  }
}
await send({ type: 'done' });
await store.close();
