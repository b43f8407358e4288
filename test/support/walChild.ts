/**
 * Child process for the kill -9 suite: `walChild.ts <dir> <dirSeed> <runSeed>`.
 *
 * Opens (recovering) the WAL in <dir> on the real file system, reports `{ type: 'ready', first,
 * next }`, then appends batches of records forever and reports `{ type: 'acked', next }` each time
 * a sync resolved: every record below `next` is then durable. Record i's payload is
 * `walChildPayload(dirSeed, i)`, so a verifier can check every byte without any IPC of payloads.
 * Once the log holds more than 1,500 records it drops all but the last 1,000 (truncateFront).
 * It never exits on its own: the parent kills it with SIGKILL.
 */
import { realFileSystem } from '../../src/io/realFileSystem.ts';
import { Rng } from '../../src/lib/rng.ts';
import { Wal } from '../../src/wal/wal.ts';
import { WAL_CHILD_SEGMENT_BYTES, walChildPayload } from './walChildPayload.ts';

async function main(): Promise<void> {
  const [dir, dirSeedText, runSeedText] = process.argv.slice(2);
  if (dir === undefined || dirSeedText === undefined || runSeedText === undefined) {
    throw new Error('usage: walChild.ts <dir> <dirSeed> <runSeed>');
  }
  const dirSeed = Number(dirSeedText);
  const rng = new Rng(Number(runSeedText));
  const wal = await Wal.open({ fs: realFileSystem, dir, segmentBytes: WAL_CHILD_SEGMENT_BYTES });
  process.send?.({ type: 'ready', first: wal.firstIndex, next: wal.nextIndex });
  for (;;) {
    // Keep the directory small (the verifier reads it all after every kill), and exercise front
    // truncation (first index to the A/B meta file, then whole-segment deletion) under SIGKILL.
    if (wal.count > 1500) await wal.truncateFront(wal.nextIndex - 1000);
    const count = rng.int(1, 9);
    const batch: Uint8Array[] = [];
    for (let k = 0; k < count; k++) batch.push(walChildPayload(dirSeed, wal.nextIndex + k));
    wal.append(batch, wal.nextIndex);
    // Sometimes overlap two syncs (group commit) before awaiting.
    if (rng.bool(0.3)) {
      const first = wal.sync();
      wal.append([walChildPayload(dirSeed, wal.nextIndex)], wal.nextIndex);
      const target = wal.nextIndex;
      await Promise.all([first, wal.sync()]);
      process.send?.({ type: 'acked', next: target });
    } else {
      const target = wal.nextIndex;
      await wal.sync();
      process.send?.({ type: 'acked', next: target });
    }
  }
}

main().catch((err) => {
  console.error('walChild failed:', err);
  process.exit(1);
});
