// Child process of killNine.test.ts: opens a state store on the real disk (LevelDB engine, real
// WAL), continues the directory's deterministic chain from wherever the store stands, and reports
// every acknowledged commit (height and root) to the parent until it is killed with SIGKILL.
import { toHex } from '../../../src/lib/bytes.ts';
import { StateStore } from '../../../src/state/stateStore.ts';
import { chainBlock, KILL9_STORE_OPTIONS } from './stateChain.ts';

const [dir, seedText] = process.argv.slice(2);
const dirSeed = Number(seedText);
const send = (msg: unknown): Promise<void> => new Promise((resolve) => process.send!(msg, () => resolve()));

const store = await StateStore.open({ dataDir: dir!, ...KILL9_STORE_OPTIONS });
await send({ type: 'ready', height: store.version, root: toHex(store.committedRoot()) });
for (let h = store.version + 1; ; h++) {
  await store.commitBlock(h, chainBlock(dirSeed, h));
  await send({ type: 'acked', height: h, root: toHex(store.committedRoot()) });
}
