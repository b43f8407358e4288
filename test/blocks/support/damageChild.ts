// Child process of engineDamage.test.ts: opens a block store whose LevelDB index the parent damaged,
// reads every stored block and reports how the store answered. Runs in its own process because a
// damaged LevelDB file can abort the process from a native assertion.
import { openBlockStore } from '../../../src/blocks/openBlockStore.ts';
import { encodeBlock } from '../../../src/consensus/codecs.ts';
import { bytesEqual } from '../../../src/lib/bytes.ts';
import { CairnError } from '../../../src/lib/errors.ts';
import { makeChain } from './chain.ts';

const [dir, seedText, cohortsText, nextText] = process.argv.slice(2);
const chain = makeChain({ seed: Number(seedText), cohorts: Number(cohortsText), payloadBytes: 256 });
const expectedNext = Number(nextText);
const send = (msg: unknown): Promise<void> => new Promise((resolve) => process.send!(msg, () => resolve()));

function describe(err: unknown): { typed: boolean; code: string; message: string } {
  if (err instanceof CairnError) return { typed: true, code: err.code, message: err.message };
  const e = err as { name?: string; code?: unknown; message?: string };
  return {
    typed: false,
    code: `${e?.name ?? 'unknown'}${e?.code ? `/${String(e.code)}` : ''}`,
    message: String(e?.message),
  };
}

let store: Awaited<ReturnType<typeof openBlockStore>>;
try {
  store = await openBlockStore({ dir: dir!, segmentBytes: 64 * 1024 });
} catch (err) {
  await send({ stage: 'open', ...describe(err) });
  process.exit(0);
}
try {
  const r = store.ranges();
  if (r.blocks.next !== expectedNext) {
    await send({ stage: 'ranges', wrong: `blocks end at ${r.blocks.next}, ${expectedNext} were stored` });
  } else {
    let wrong: string | undefined;
    for (let n = r.blocks.first; n < r.blocks.next && wrong === undefined; n++) {
      const b = store.readBlock(n);
      if (b.status !== 'found')
        wrong = `block ${n} read as ${b.status} inside [${r.blocks.first}, ${r.blocks.next})`;
      else if (!bytesEqual(encodeBlock(b.value), encodeBlock(chain.block(n)))) wrong = `block ${n} differs`;
    }
    await send(wrong === undefined ? { stage: 'read', ok: true } : { stage: 'read', wrong });
  }
} catch (err) {
  await send({ stage: 'read', ...describe(err) });
}
await store.close().catch(() => undefined);
process.exit(0);
