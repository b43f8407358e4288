/**
 * Where the state store's engine lives. The store needs four things from it that `OrderedKv` does
 * not cover: create an empty engine directory, open one, checkpoint a live one into another
 * directory (the snapshot), and clone a checkpoint into a fresh engine directory. Production uses
 * LevelDB (classic-level): LevelDB has no checkpoint API, so a checkpoint quiesces the engine (close),
 * hard-links its immutable table files, copies the small mutable files (MANIFEST, CURRENT, log),
 * fsyncs them and reopens (~80 ms at 1M keys, dependency-measurements §1c). Tests use an in-memory
 * host with the same contract (test/state/support/memoryKvHost.ts).
 */
import * as path from 'node:path';
import type { FileSystem } from '../io/fileSystem.ts';
import { removeTree } from '../io/removeTree.ts';
import { ClassicLevelKv, type ClassicLevelKvOptions } from '../kv/classicLevelKv.ts';
import type { OrderedKv } from '../kv/orderedKv.ts';
import { CairnError, describe, errnoCode } from '../lib/errors.ts';
import { copyFileDurable, ensureDir } from './files.ts';

export interface CheckpointResult {
  kv: OrderedKv;
  files: string[];
  /** Set when copying failed (the engine was reopened anyway). */
  error?: unknown;
  /** Where the stall went: engine close, links + copies + fsyncs, reopen (ms). */
  phasesMs?: { close: number; copy: number; reopen: number };
}

export interface StateKvHost {
  /** Creates an empty engine at `dir` (which must not exist); durable on return. Returns it open. */
  create(dir: string): Promise<OrderedKv>;
  /** Opens the engine at `dir` (created by `create` or `clone`). */
  open(dir: string): Promise<OrderedKv>;
  /**
   * Closes `kv` (open at `dir`), writes a self-contained durable copy of its files into `to` (which
   * exists and is empty), reopens it and returns the reopened engine and the copied file names.
   * The caller has written everything it wants in the copy with a synced batch beforehand. If the
   * copy fails but the engine reopened, the engine comes back with `error` set (the caller keeps
   * going without a snapshot); if reopening fails, the call rejects.
   */
  checkpoint(kv: OrderedKv, dir: string, to: string): Promise<CheckpointResult>;
  /**
   * Optional: shrink what a checkpoint must copy and replay (LevelDB: flush the memtable), while
   * writes continue. A snapshot awaits it before quiescing the engine.
   */
  prepareCheckpoint?(kv: OrderedKv): Promise<void>;
  /** Makes `to` (must not exist) a durable engine directory holding the checkpoint `files` of `from`. */
  clone(from: string, files: readonly string[], to: string): Promise<void>;
  /**
   * Optional, for read-only inspection: opens a private copy of the engine at `dir` made in
   * `scratch` (must not exist; the caller removes it after closing), so that inspection writes
   * nothing into `dir` and takes no engine lock a writer would trip over. Without it, read-only
   * opens use `open(dir)` (an engine that writes nothing when opened, like the in-memory one).
   */
  openCopy?(dir: string, scratch: string): Promise<OrderedKv>;
}

/** Attempts at a stable copy of a live engine before read-only inspection gives up with LOCKED. */
const COPY_ATTEMPTS = 3;

/** Files LevelDB never needs in a copy: its lock and its human-readable logs. */
function skipInCopy(name: string): boolean {
  return name === 'LOCK' || name === 'LOG' || name === 'LOG.old';
}
/** LevelDB table files are immutable once written: hard-link them. */
function isImmutable(name: string): boolean {
  return name.endsWith('.ldb') || name.endsWith('.sst');
}

export class LevelKvHost implements StateKvHost {
  constructor(
    private readonly fs: FileSystem,
    private readonly options: ClassicLevelKvOptions = {},
  ) {}

  async create(dir: string): Promise<OrderedKv> {
    ensureDir(this.fs, path.dirname(dir));
    const kv = await ClassicLevelKv.open(dir, this.options);
    this.fs.syncDir(dir);
    this.fs.syncDir(path.dirname(dir));
    return kv;
  }

  open(dir: string): Promise<OrderedKv> {
    return ClassicLevelKv.open(dir, this.options);
  }

  async prepareCheckpoint(kv: OrderedKv): Promise<void> {
    if (kv instanceof ClassicLevelKv) await kv.flushMemtable();
  }

  async checkpoint(kv: OrderedKv, dir: string, to: string): Promise<CheckpointResult> {
    const t0 = performance.now();
    await kv.close();
    const t1 = performance.now();
    const files: string[] = [];
    let error: unknown;
    try {
      for (const name of this.fs.readdir(dir).sort()) {
        if (skipInCopy(name)) continue;
        const from = path.join(dir, name);
        if (this.fs.stat(from).isDirectory) continue;
        if (isImmutable(name)) this.fs.link(from, path.join(to, name));
        else copyFileDurable(this.fs, from, path.join(to, name));
        files.push(name);
      }
      this.fs.syncDir(to);
    } catch (err) {
      error = err;
    }
    const t2 = performance.now();
    const reopened = await this.open(dir);
    const phasesMs = { close: t1 - t0, copy: t2 - t1, reopen: performance.now() - t2 };
    return error === undefined ? { kv: reopened, files, phasesMs } : { kv: reopened, files, error, phasesMs };
  }

  /**
   * Opening LevelDB writes (it replays its log into a new table and MANIFEST), so inspection opens
   * a copy: tables hard-linked (copied across devices), the rest copied. The directory listing with
   * sizes is taken before and after the copy; if a writer changed anything meanwhile the copy may mix
   * two states, so it is retried and, if the engine keeps changing, refused with LOCKED.
   */
  async openCopy(dir: string, scratch: string): Promise<OrderedKv> {
    let lastChange = '';
    for (let attempt = 0; attempt < COPY_ATTEMPTS; attempt++) {
      removeTree(this.fs, scratch);
      ensureDir(this.fs, scratch);
      const before = this.listing(dir);
      try {
        for (const name of before.names) {
          const from = path.join(dir, name);
          const to = path.join(scratch, name);
          if (isImmutable(name)) {
            try {
              this.fs.link(from, to);
              continue;
            } catch (err) {
              if (errnoCode(err) !== 'EXDEV') throw err;
            }
          }
          copyFileDurable(this.fs, from, to);
        }
      } catch (err) {
        // A file vanished under the copy: a writer compacted. Anything else is a real failure.
        if (errnoCode(err) !== 'ENOENT') throw err;
        lastChange = `${describe(err)}`;
        continue;
      }
      const after = this.listing(dir);
      if (after.signature === before.signature) return this.open(scratch);
      lastChange = 'files changed during the copy';
    }
    removeTree(this.fs, scratch);
    throw new CairnError(
      'LOCKED',
      `state engine ${dir} kept changing while it was copied for inspection (${lastChange}): a writer is ` +
        'running; retry, or inspect a snapshot',
      { details: { file: dir } },
    );
  }

  private listing(dir: string): { names: string[]; signature: string } {
    const names: string[] = [];
    const parts: string[] = [];
    for (const name of this.fs.readdir(dir).sort()) {
      if (skipInCopy(name)) continue;
      const st = this.fs.stat(path.join(dir, name));
      if (st.isDirectory) continue;
      names.push(name);
      parts.push(`${name}:${st.size}`);
    }
    return { names, signature: parts.join('/') };
  }

  async clone(from: string, files: readonly string[], to: string): Promise<void> {
    ensureDir(this.fs, to);
    for (const name of files) {
      if (isImmutable(name)) this.fs.link(path.join(from, name), path.join(to, name));
      else copyFileDurable(this.fs, path.join(from, name), path.join(to, name));
    }
    this.fs.syncDir(to);
  }
}
