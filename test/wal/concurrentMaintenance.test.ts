/**
 * Review (rrev2): the WAL power-loss sweeps await every truncation and reset before the next step,
 * so two pieces of maintenance never overlap there, and no record is appended while one runs. This
 * fuzz issues every operation WITHOUT awaiting it (truncateBack, truncateFront and reset queued behind
 * each other, appends and syncs between them, close with all of it pending), yields to the event loop
 * at random, and takes power-cut images at random moments: right after a call, inside a sync's
 * resolution, between event-loop turns. Each image is then recovered and checked against what had
 * been acknowledged at the moment it was taken:
 *  - every record a resolved sync covered is there, byte for byte, unless a truncation or reset
 *    called before the image could drop it (a truncateBack(n) may drop records from n on, a
 *    truncateFront(n) those below n, a reset all of them: from the call on, since they take effect in
 *    the call and are durable only when they resolve);
 *  - every record recovered is one that was appended at that index (no stale or foreign frame);
 *  - the recovered log verifies.
 * Randomized: the seed is printed; replay with CAIRN_SEED.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isCairnError } from '../../src/lib/errors.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { Wal } from '../../src/wal/wal.ts';

const DIR = '/wal';

interface Config {
  segmentBytes: number;
  syncOffThread: boolean;
  spareSegment: 'at-half-full' | 'always-ready';
}

const CONFIGS: Config[] = [
  { segmentBytes: 4096, syncOffThread: true, spareSegment: 'at-half-full' },
  { segmentBytes: 4096, syncOffThread: false, spareSegment: 'always-ready' },
  { segmentBytes: 8192, syncOffThread: true, spareSegment: 'always-ready' },
  { segmentBytes: 2048, syncOffThread: true, spareSegment: 'always-ready' },
];

interface Image {
  fs: SimulatedFileSystem;
  /** Records owed at the moment of the image: index -> payload. */
  owed: Map<number, Uint8Array>;
  where: string;
}

async function runOnce(
  seed: number,
  config: Config,
  steps: number,
): Promise<{ images: number; ops: number }> {
  const rng = new Rng(seed);
  const fs = new SimulatedFileSystem({ seed });
  const options = {
    fs,
    dir: DIR,
    segmentBytes: config.segmentBytes,
    syncOffThread: config.syncOffThread,
    spareSegment: config.spareSegment,
    preallocate: true,
  };
  let wal = await Wal.open(options);
  /** The log as the API shows it (truncations and reset take effect inside the call). */
  const log = new Map<number, Uint8Array>();
  let first = 0;
  let next = 0;
  const owed = new Map<number, Uint8Array>();
  /** Every payload ever appended at an index. */
  const ever = new Map<number, Uint8Array[]>();
  const images: Image[] = [];
  const pending = new Set<Promise<unknown>>();
  const unexpected: unknown[] = [];
  let ops = 0;

  const snap = (where: string): void => {
    images.push({ fs: fs.crashImage({ seed: rng.nextU32() }), owed: new Map(owed), where });
  };
  const track = (p: Promise<unknown>, what: string): void => {
    const t = p.catch((err: unknown) => {
      // A sync cut short by close is answered CLOSED: nothing was promised.
      if (!isCairnError(err, 'CLOSED')) unexpected.push(new Error(`${what}: ${String(err)}`, { cause: err }));
    });
    pending.add(t);
    void t.finally(() => pending.delete(t));
  };
  const maybeSnap = (where: string, probability = 0.1): void => {
    if (rng.bool(probability)) snap(where);
  };

  const sync = (): void => {
    const covered: [number, Uint8Array][] = [...log.entries()];
    const p = wal.sync().then(() => {
      // Still the log's records (no truncation or reset dropped them since the call): owed now.
      for (const [i, payload] of covered) if (log.get(i) === payload) owed.set(i, payload);
      // The moment a caller would act on the acknowledgement: the most telling image.
      maybeSnap(`inside the resolution of a sync covering ${covered.length} records`, 0.5);
    });
    track(p, 'sync');
  };

  for (let step = 0; step < steps; step++) {
    const r = rng.next();
    ops++;
    if (r < 0.45) {
      const count = rng.int(1, 5);
      const payloads: Uint8Array[] = [];
      for (let k = 0; k < count; k++) {
        const size = rng.bool(0.05) ? rng.int(config.segmentBytes, config.segmentBytes * 2) : rng.int(1, 400);
        const payload = rng.bytes(size);
        payloads.push(payload);
      }
      assert.equal(wal.append(payloads, next), next);
      for (const payload of payloads) {
        log.set(next, payload);
        const list = ever.get(next) ?? [];
        list.push(payload);
        ever.set(next, list);
        next++;
      }
    } else if (r < 0.7) {
      sync();
    } else if (r < 0.8) {
      const n = rng.int(Math.max(first, next - 8), next + 1);
      for (let i = n; i < next; i++) {
        log.delete(i);
        owed.delete(i);
      }
      next = n;
      track(wal.truncateBack(n), `truncateBack(${n})`);
    } else if (r < 0.88) {
      const n = rng.int(first, next + 1);
      for (let i = first; i < n; i++) {
        log.delete(i);
        owed.delete(i);
      }
      first = n;
      track(wal.truncateFront(n), `truncateFront(${n})`);
    } else if (r < 0.9) {
      const n = next + rng.int(0, 3);
      log.clear();
      owed.clear();
      first = n;
      next = n;
      track(wal.reset(n), `reset(${n})`);
    } else if (r < 0.92) {
      // Close with everything still pending, then reopen.
      const closing = wal.close();
      maybeSnap('right after close() was called');
      await closing;
      await Promise.all(pending);
      snap('after a close');
      wal = await Wal.open(options);
      assert.deepEqual(
        [wal.firstIndex, wal.nextIndex],
        [first, next],
        'a clean reopen returns the log as it was',
      );
    } else {
      // Let the event loop run: a microtask, a turn, or until something pending settles.
      const u = rng.next();
      if (u < 0.3) await Promise.resolve();
      else if (u < 0.7) await new Promise<void>((resolve) => setImmediate(resolve));
      else if (pending.size > 0) await Promise.race(pending);
    }
    maybeSnap(`after step ${step}`);
  }
  sync();
  await Promise.all(pending);
  snap('at the end');
  await wal.close();
  assert.deepEqual(unexpected, [], `seed ${seed}: no operation failed`);

  for (const [k, image] of images.entries()) {
    const where = `seed ${seed} ${JSON.stringify(config)} image ${k} (${image.where})`;
    const recovered = await Wal.open({ ...options, fs: image.fs }).catch((err: unknown) =>
      assert.fail(`${where}: recovery failed: ${String(err)}`),
    );
    try {
      for (const [i, payload] of image.owed) {
        assert.ok(
          i >= recovered.firstIndex && i < recovered.nextIndex,
          `${where}: acknowledged record ${i} is gone (recovered [${recovered.firstIndex}, ${recovered.nextIndex}))`,
        );
        assert.deepEqual(recovered.read(i), payload, `${where}: acknowledged record ${i} differs`);
      }
      for (let i = recovered.firstIndex; i < recovered.nextIndex; i++) {
        const got = recovered.read(i);
        assert.ok(
          (ever.get(i) ?? []).some((p) => Buffer.from(p).equals(got)),
          `${where}: record ${i} (${got.byteLength} bytes) was never appended at that index`,
        );
      }
      recovered.verify();
    } finally {
      await recovered.close();
    }
  }
  return { images: images.length, ops };
}

test('WAL: truncations, resets, appends, syncs and close issued without waiting: power cuts at random moments lose nothing acknowledged', async () => {
  const base = seedFromEnv();
  const runs = 8;
  console.log(
    `concurrentMaintenance seed ${base} (replay with CAIRN_SEED=${base}); seeds ${base}..${base + runs - 1}`,
  );
  let images = 0;
  let ops = 0;
  for (let s = 0; s < runs; s++) {
    for (const config of CONFIGS) {
      const r = await runOnce((base + s) >>> 0, config, 220);
      images += r.images;
      ops += r.ops;
    }
  }
  console.log(`concurrentMaintenance: ${ops} operations, ${images} power-cut images recovered and checked`);
  assert.ok(images > 100);
});
