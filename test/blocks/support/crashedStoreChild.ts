// Child of inspection.test.ts: writes a block store and dies without closing it (the LevelDB log
// is not compacted, the value log's segment stays preallocated, nothing is checkpointed at close).
import { openBlockStore } from '../../../src/blocks/openBlockStore.ts';
import { makeChain } from './chain.ts';

const [dir] = process.argv.slice(2);
const chain = makeChain({ seed: 5, cohorts: 6, payloadBytes: 200 });
const store = await openBlockStore({ dir: dir!, segmentBytes: 64 * 1024 });
for (let i = 0; i < 5; i++) {
  store.writeQC(chain.qcs[i]!);
  const r = chain.range(i);
  for (let n = r.first; n < r.next; n++) store.writeBlock(n, chain.block(n));
  await store.flush();
}
await store.pruneBefore(4);
store.writeQC(chain.qcs[5]!);
process.exit(0);
