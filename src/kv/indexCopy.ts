import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { type FileSystem, readWholeFile, writeFully } from '../io/fileSystem.ts';
import { realFileSystem } from '../io/realFileSystem.ts';
import { removeTreeBestEffort } from '../io/removeTree.ts';
import { ClassicLevelKv } from './classicLevelKv.ts';
import { ForwardingKv } from './forwardingKv.ts';
import type { OrderedKv } from './orderedKv.ts';

/** Scratch cleanup, for callers of these copies (and the receipt store's spill directory). */
export { removeTreeBestEffort } from '../io/removeTree.ts';

/**
 * A private scratch copy of a LevelDB directory, for inspection tools. Opening LevelDB in place
 * is never read-only: it replays its log into a new table, writes a new MANIFEST and CURRENT and
 * deletes obsolete files. The copy takes the table files (`.ldb`/`.sst`, immutable once written)
 * as hard links and copies everything else except `LOCK`, so nothing the engine does to the copy
 * can reach the original. A missing source gives an empty copy. The copy is deleted on close.
 */
export async function openIndexCopy(source: string, fs: FileSystem = realFileSystem): Promise<OrderedKv> {
  const scratch = path.join(tmpdir(), `cairn-index-copy-${process.pid}-${randomBytes(6).toString('hex')}`);
  fs.mkdir(scratch);
  const target = path.join(scratch, 'index');
  try {
    fs.mkdir(target);
    if (fs.exists(source)) copyFlatDir(fs, source, target);
    const kv = await ClassicLevelKv.open(target);
    return new DisposableKv(kv, () => removeTreeBestEffort(fs, scratch));
  } catch (err) {
    removeTreeBestEffort(fs, scratch);
    throw err;
  }
}

/** Copies a directory without subdirectories (LevelDB's), tables as hard links, LOCK left out. */
function copyFlatDir(fs: FileSystem, source: string, target: string): void {
  for (const name of fs.readdir(source)) {
    if (name === 'LOCK') continue;
    const from = path.join(source, name);
    const to = path.join(target, name);
    if (/\.(ldb|sst)$/.test(name)) {
      try {
        fs.link(from, to);
        continue;
      } catch {
        // another file system: fall back to a copy
      }
    }
    const bytes = readWholeFile(fs, from);
    const handle = fs.open(to, { create: true, exclusive: true });
    try {
      writeFully(handle, [bytes], 0);
    } finally {
      handle.close();
    }
  }
}

class DisposableKv extends ForwardingKv {
  private closing: Promise<void> | undefined;

  constructor(
    inner: OrderedKv,
    private readonly dispose: () => void,
  ) {
    super(inner);
  }

  override close(): Promise<void> {
    this.closing ??= this.inner.close().finally(() => this.dispose());
    return this.closing;
  }
}
