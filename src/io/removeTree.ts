/**
 * Removing a file or directory tree through the injectable FileSystem (so crash tests see every
 * unlink). One walk serves two kinds of caller:
 *
 *  - `removeTree`: our own data (engine directories, snapshot trees): the first failure throws, so
 *    a store never carries on believing a tree is gone. No durability on its own: callers that
 *    need the removal to survive a power cut rename the tree aside first and fsync the directory
 *    (`src/state/files.ts` `removeDirAtomic`).
 *  - `removeTreeBestEffort`: scratch (private index copies, DuckDB spill files, a replaced index):
 *    a failure is swallowed and the walk goes on with the remaining entries, since leftover scratch
 *    is harmless and must not fail the operation that made it.
 */
import * as path from 'node:path';
import type { FileSystem } from './fileSystem.ts';

/** Deletes `target` (a file, or a directory and everything below it); absent is fine. Throws. */
export function removeTree(fs: FileSystem, target: string): void {
  walkAndRemove(fs, target, false);
}

/** Like `removeTree`, but never throws: what cannot be removed is left in place. */
export function removeTreeBestEffort(fs: FileSystem, target: string): void {
  walkAndRemove(fs, target, true);
}

function walkAndRemove(fs: FileSystem, target: string, bestEffort: boolean): void {
  try {
    if (!fs.exists(target)) return;
    if (!fs.stat(target).isDirectory) {
      fs.unlink(target);
      return;
    }
    for (const name of fs.readdir(target)) walkAndRemove(fs, path.join(target, name), bestEffort);
    fs.rmdir(target);
  } catch (err) {
    if (!bestEffort) throw err;
  }
}
