/**
 * Small durable files of the state store (CURRENT, ROLLBACK_INTENT, IMPORT_IN_PROGRESS, snapshot
 * MANIFEST) and directory helpers, all through the injectable FileSystem so the crash tests see every
 * write. Every small file is `magic ‖ body ‖ crc32c(magic ‖ body)`, written to `<name>.tmp`, fsynced,
 * renamed over the name and followed by a directory fsync: a reader sees the old file or the new one,
 * never a torn one, and a damaged file is reported (CORRUPT), never guessed at.
 */
import * as path from 'node:path';
import type { FileSystem } from '../io/fileSystem.ts';
import { mkdirDurable, readWholeFile, writeFully } from '../io/fileSystem.ts';
import { removeTree } from '../io/removeTree.ts';
import { bytesEqual } from '../lib/bytes.ts';
import { crc32c } from '../lib/crc32c.ts';
import { CairnError, errnoCode } from '../lib/errors.ts';

export function writeRecordFile(fs: FileSystem, file: string, magic: Uint8Array, body: Uint8Array): void {
  const out = new Uint8Array(magic.length + body.length + 4);
  out.set(magic, 0);
  out.set(body, magic.length);
  new DataView(out.buffer).setUint32(out.length - 4, crc32c(out.subarray(0, out.length - 4)), false);
  writeFileDurable(fs, file, out);
}

/** tmp + fsync + rename + directory fsync. */
export function writeFileDurable(fs: FileSystem, file: string, bytes: Uint8Array): void {
  const tmp = `${file}.tmp`;
  if (fs.exists(tmp)) fs.unlink(tmp);
  const h = fs.open(tmp, { create: true });
  try {
    writeFully(h, [bytes], 0);
    h.sync();
  } finally {
    h.close();
  }
  fs.rename(tmp, file);
  fs.syncDir(path.dirname(file));
}

/** The body of a record file, undefined if absent; CORRUPT if present but damaged. */
export function readRecordFile(fs: FileSystem, file: string, magic: Uint8Array): Uint8Array | undefined {
  let bytes: Uint8Array;
  try {
    bytes = readWholeFile(fs, file);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
  const bad = (reason: string) =>
    new CairnError('CORRUPT', `${file} is damaged: ${reason}`, { details: { file, length: bytes.length } });
  if (bytes.length < magic.length + 4) throw bad('too short');
  if (!bytesEqual(bytes.subarray(0, magic.length), magic)) throw bad('wrong magic');
  const stored = new DataView(bytes.buffer, bytes.byteOffset).getUint32(bytes.length - 4, false);
  if (stored !== crc32c(bytes.subarray(0, bytes.length - 4))) throw bad('checksum mismatch');
  return bytes.subarray(magic.length, bytes.length - 4);
}

export function removeFileDurable(fs: FileSystem, file: string): void {
  if (!fs.exists(file)) return;
  fs.unlink(file);
  fs.syncDir(path.dirname(file));
}

/**
 * Atomic directory removal: rename to `<dir>-removing` (durable), then delete. A crash leaves only
 * the `-removing` tree, which the next open sweeps; the original name is gone at once.
 */
export function removeDirAtomic(fs: FileSystem, dir: string): void {
  if (!fs.exists(dir)) return;
  const trash = `${dir}-removing`;
  removeTree(fs, trash);
  fs.rename(dir, trash);
  fs.syncDir(path.dirname(dir));
  removeTree(fs, trash);
  fs.syncDir(path.dirname(dir));
}

/** Removes every `*-tmp`, `*-removing` and `*.tmp` entry of `dir`. Returns what it removed. */
export function sweepLeftovers(fs: FileSystem, dir: string): string[] {
  if (!fs.exists(dir)) return [];
  const removed: string[] = [];
  for (const name of fs.readdir(dir)) {
    if (name.endsWith('-tmp') || name.endsWith('-removing') || name.endsWith('.tmp')) {
      removeTree(fs, path.join(dir, name));
      removed.push(name);
    }
  }
  if (removed.length > 0) fs.syncDir(dir);
  return removed;
}

export function ensureDir(fs: FileSystem, dir: string): void {
  mkdirDurable(fs, dir, path);
}

/** Copies a file and fsyncs the copy. */
export function copyFileDurable(fs: FileSystem, from: string, to: string): void {
  const bytes = readWholeFile(fs, from);
  const h = fs.open(to, { create: true, exclusive: true });
  try {
    writeFully(h, [bytes], 0);
    h.sync();
  } finally {
    h.close();
  }
}

/** CRC32C and size of a file, read in 1 MiB chunks (bounded memory). */
export function fileChecksum(fs: FileSystem, file: string): { bytes: number; crc32c: number } {
  const h = fs.open(file, { readOnly: true });
  try {
    const size = h.size();
    const buf = new Uint8Array(Math.min(size, 1 << 20) || 1);
    let crc = 0;
    for (let pos = 0; pos < size; ) {
      const n = h.read(buf, 0, Math.min(buf.length, size - pos), pos);
      if (n === 0) break;
      crc = crc32c(buf.subarray(0, n), crc);
      pos += n;
    }
    return { bytes: size, crc32c: crc };
  } finally {
    h.close();
  }
}
