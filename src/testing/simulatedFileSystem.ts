/**
 * SimulatedFileSystem: an in-memory `FileSystem` that knows, per file and per directory, what is
 * durable and what is only written, so tests can cut the power at any call and inject I/O errors.
 * Seeded by `Rng`: the same seed and the same sequence of calls give the same outcomes, so every
 * failure replays from its seed.
 *
 * ## Model
 * - A file is an inode with `durable` bytes (what the disk holds) and `current` bytes (what reads
 *   see), plus the ordered list of writes / truncates / allocates issued since its last sync.
 *   `sync()` makes that list durable: the data and the size, NOT the directory entry (strict POSIX:
 *   a new file also needs `syncDir` of its parent). `syncAsync()` makes durable what was written
 *   before the call, resolving a few event-loop turns later so other work interleaves.
 * - A directory maps names to inodes, with a durable map and the ordered list of entry operations
 *   (create, mkdir, rename, unlink, rmdir) since its last `syncDir`. A rename inside one directory is
 *   one atomic entry operation; a rename across directories is an unlink in one and a link in the
 *   other, each made durable by its own directory's `syncDir`.
 * - Open handles refer to inodes, so a renamed or unlinked file stays readable and writable through
 *   them, as on POSIX.
 * - A failed sync (injected EIO) drops the unsynced writes from the to-be-synced list without making
 *   them durable, while reads still see them: Linux marks the pages clean after a writeback error,
 *   so a retried fsync "succeeds" without persisting anything. A crash image then lacks that data,
 *   which is exactly how a store that retries fsync and acknowledges is caught.
 *
 * ## Power loss
 * A power cut keeps every synced byte and directory entry. Of the rest it may keep anything a real
 * disk under a real page cache can: writeback happens page by page, in any order, at any time, and
 * the pages being written when the power fails can come back as zeros or junk.
 * - `crashImage(policy?)` returns a NEW file system holding what a power cut now could leave. Per
 *   file, the unsynced data ('data'):
 *   - 'drop': none of it; 'keep': all of it;
 *   - 'torn': an ordered prefix of the unsynced operations whose last kept write is torn at a random
 *     byte, the torn 512-byte sector optionally damaged (the legacy, prefix-only model);
 *   - 'pages': every 4 KiB page an unsynced operation touched independently holds its content as of
 *     any moment since the last sync (the synced version, the newest one, or any in between), so
 *     later pages can survive while earlier ones are lost; the file size is the size as of any such
 *     moment; and with `damageProbability` up to `maxDamagedPages` pages that were being written
 *     come back damaged, whole or one 512-byte sector of them, zeroed or garbled ('damage');
 *   - 'random' (default): one of drop / keep / torn / pages per file, pages being the most likely
 *     (see `RANDOM_DATA_WEIGHTS`), damage zero or garble;
 *   - 'random-prefix': the legacy default (drop 1/4, keep 1/4, torn 1/2), for a sweep that needs the
 *     old model while a defect the new one finds is open.
 *   Bytes that no unsynced operation covers are never altered (only the explicit damage helpers
 *   below change synced bytes); damage only ever hits bytes an unsynced write covered.
 *   Per directory ('dirOps'), each unsynced entry operation kept or lost independently ('random',
 *   default) or as an ordered prefix ('prefix'), kept ones applied in order.
 * - `crashAfter(n, policy?)`: the n-th durability-relevant call (see `mutationCount`) completes, then
 *   the power fails: the image is captured at that instant and every later call, on the file system
 *   and on its handles, throws an error with code `ECRASH` (pending `syncAsync` promises reject with
 *   it) so the workload stops. `crashedImage()` returns the captured image to recover from.
 *   `crash(policy?)` cuts the power immediately (e.g. from the `onMutation` hook).
 *   Harness pattern: run the workload once to learn N = `mutationCount`, then for k in 1..N run it on
 *   a fresh file system with `crashAfter(k)`, recover on `crashedImage()`, check.
 * - Durability-relevant calls ("mutations"): open with `create`, writev, truncate, allocate, sync,
 *   syncAsync, mkdir, rename, unlink, rmdir, syncDir. Failing ones count too.
 *
 * ## Kill (the process dies, the machine keeps running)
 * A `SimulatedFileSystem` object is one process's view of the disk. `kill()` (or `killAfter(n)`, the
 * kill twin of `crashAfter`) ends that process: every later call on this view and on its handles
 * throws `EKILLED`, a pending `syncAsync` rejects without making anything durable. The page cache is
 * untouched: written data, created, renamed and unlinked entries stay exactly as they were, visible
 * and still unsynced. `successor()` (also returned by `kill()`) is the next process's view of the
 * same disk, with fresh call counters; it reads what the dead process wrote, and a power cut on it
 * (`crash()`, `crashAfter()`, `crashImage()`) may drop everything nobody ever fsynced, the dead
 * process's creates and renames included. Killing a view that crashed is meaningless and throws.
 *
 * ## Faults
 * - `injectFault({ op, nth, error, pathIncludes?, times? })`: the nth call of kind `op` from now on
 *   (counting only calls whose path contains `pathIncludes`) fails. 'EIO' / 'ENOSPC' / 'EACCES' throw
 *   a Node-style errno error (syncAsync rejects). On writev, 'SHORT_WRITE' writes a random strict
 *   prefix (possibly 0 bytes) and returns its length, and 'ENOSPC' writes a random strict prefix and
 *   then throws; the written bytes are real unsynced data. On allocate, ENOSPC extends part way.
 *   The returned `InjectedFault` tells whether and where it fired.
 * - `opCounts` counts every call by kind (including reads, stats, exists, size, close), so a harness
 *   can enumerate call sites: run once, then fail call k of kind op for every k.
 *
 * ## Test helpers
 * `readFileBytes`, `writeFileBytes` (durably, for setup), `listFiles`, `makeEverythingDurable`, and
 * the damage helpers for corruption sweeps, which change durable and current bytes alike (damage on
 * the medium): `flipBit`, `zeroPage` (a whole 4 KiB page reads as zeros), `garblePage` (a page of
 * random non-zero bytes), `pageCount`. Helpers are not counted and ignore faults.
 *
 * Paths are resolved with POSIX semantics against '/'. Keep files small (segments of KiB, not MiB):
 * every byte lives in memory, twice once synced.
 */
import * as path from 'node:path';
import type { FileHandle, FileStat, FileSystem, OpenOptions } from '../io/fileSystem.ts';
import { Rng } from '../lib/rng.ts';
import { ByteContent } from './sim/byteContent.ts';

export type SimOp =
  | 'open'
  | 'read'
  | 'writev'
  | 'sync'
  | 'syncAsync'
  | 'truncate'
  | 'allocate'
  | 'size'
  | 'close'
  | 'stat'
  | 'exists'
  | 'readdir'
  | 'mkdir'
  | 'rename'
  | 'link'
  | 'unlink'
  | 'rmdir'
  | 'syncDir';

/** Kinds of call that can be made to fail. */
export type FaultableOp = Exclude<SimOp, 'close' | 'exists' | 'size'>;

export const FAULTABLE_OPS: readonly FaultableOp[] = [
  'open',
  'read',
  'writev',
  'sync',
  'syncAsync',
  'truncate',
  'allocate',
  'stat',
  'readdir',
  'mkdir',
  'rename',
  'link',
  'unlink',
  'rmdir',
  'syncDir',
];

export type FaultError = 'EIO' | 'ENOSPC' | 'EACCES' | 'SHORT_WRITE';

export interface FaultSpec {
  op: FaultableOp;
  /** 1 = the next matching call after injection. */
  nth: number;
  error: FaultError;
  /** Only calls whose path contains this substring count and fail. */
  pathIncludes?: string;
  /** Number of consecutive matching calls that fail, starting at the nth (default 1). */
  times?: number;
}

export interface InjectedFault extends Readonly<FaultSpec> {
  /** How many times it has fired. */
  readonly firedCount: number;
  /**
   * Path and mutation count of the first firing, and whether the failed call was a mutation (an
   * open with `create` is; a read-only open is not).
   */
  readonly firstFiring: { path: string; mutationCount: number; mutating: boolean } | undefined;
}

export type CrashDataMode = 'drop' | 'keep' | 'torn' | 'pages' | 'random' | 'random-prefix';

export interface CrashPolicy {
  /**
   * Unsynced file data (see the header): 'drop' keeps none, 'keep' keeps all, 'torn' keeps an ordered
   * prefix with the last kept write torn, 'pages' keeps any subset of page versions and may damage
   * pages being written, 'random' (default) picks one of those per file, 'random-prefix' is the legacy
   * random model without page subsets or zeroing.
   */
  data?: CrashDataMode;
  /** 'torn': probability that the torn sector is also damaged (default 0.5). */
  garbleProbability?: number;
  /** Sector size for damage (default 512). */
  sectorBytes?: number;
  /** Page size of writeback (default 4096). */
  pageBytes?: number;
  /** 'pages': probability that pages being written come back damaged (default 0.5). */
  damageProbability?: number;
  /** 'pages': at most this many damaged pages per file (default 2). */
  maxDamagedPages?: number;
  /**
   * What a damaged sector or page holds: 'zero', 'garble' (random non-zero bytes, so "torn reads as
   * zeros" cannot be relied on) or 'either'. Default 'garble' under data 'torn' (the legacy
   * behaviour) and 'random-prefix', 'either' otherwise.
   */
  damage?: 'zero' | 'garble' | 'either';
  /**
   * Unsynced directory entry operations: 'drop' none survive, 'keep' all survive, 'random'
   * (default) each survives independently with probability 1/2, 'prefix' a random ordered prefix
   * survives (what an ordered metadata journal such as ext4's gives).
   */
  dirOps?: 'drop' | 'keep' | 'random' | 'prefix';
  /** Seed for this image's random choices (default: drawn from the file system's generator). */
  seed?: number;
}

/** How `data: 'random'` picks a model per file (cumulative order drop, keep, torn, pages). */
export const RANDOM_DATA_WEIGHTS: Readonly<Record<'drop' | 'keep' | 'torn' | 'pages', number>> =
  Object.freeze({ drop: 0.15, keep: 0.2, torn: 0.2, pages: 0.45 });

/** Worst case for lost writes: only what was synced survives. */
export const DROP_ALL: CrashPolicy = Object.freeze({ data: 'drop', dirOps: 'drop' });
/** A crash right after the page cache was written back: everything survives. */
export const KEEP_ALL: CrashPolicy = Object.freeze({ data: 'keep', dirOps: 'keep' });
/** Any subset of page versions survives, nothing is damaged. */
export const PAGE_SUBSET: CrashPolicy = Object.freeze({
  data: 'pages',
  damageProbability: 0,
  dirOps: 'random',
});
/** Any subset of page versions survives, and one or two pages being written come back zeroed. */
export const PAGES_ZEROED: CrashPolicy = Object.freeze({
  data: 'pages',
  damageProbability: 1,
  damage: 'zero',
  dirOps: 'random',
});
/** Any subset of page versions survives, and one or two pages being written come back garbled. */
export const PAGES_GARBLED: CrashPolicy = Object.freeze({
  data: 'pages',
  damageProbability: 1,
  damage: 'garble',
  dirOps: 'random',
});
/** The model before page subsets: unsynced data survives only as a (torn) prefix. */
export const PREFIX_ONLY: CrashPolicy = Object.freeze({ data: 'random-prefix', dirOps: 'random' });

export interface MutationInfo {
  /** 1-based position of this call among mutations. */
  index: number;
  op: SimOp;
  path: string;
}

export interface SimulatedFileSystemOptions {
  seed: number;
  /** Keep the list of every mutation (op and path) in `mutationTrace` (default false). */
  traceMutations?: boolean;
  /** Called after every mutation (the call has taken effect, or failed). May call `crash()`. */
  onMutation?: (info: MutationInfo) => void;
  /** Upper bound of event-loop turns before `syncAsync` settles (default 2: 0..2 setImmediate hops). */
  maxSyncAsyncHops?: number;
}

type DataOp =
  | { kind: 'write'; seq: number; position: number; data: Uint8Array }
  | { kind: 'truncate'; seq: number; length: number }
  | { kind: 'allocate'; seq: number; length: number };

type DirOp =
  | { kind: 'link'; name: string; node: Node }
  | { kind: 'unlink'; name: string; node: Node }
  | { kind: 'rename'; from: string; to: string; node: Node };

class FileNode {
  readonly kind = 'file';
  pending: DataOp[] = [];
  constructor(
    public durable: ByteContent,
    public current: ByteContent,
  ) {}
}

class DirNode {
  readonly kind = 'dir';
  entries = new Map<string, Node>();
  durableEntries = new Map<string, Node>();
  pending: DirOp[] = [];
}

type Node = FileNode | DirNode;

const MUTATIONS: ReadonlySet<SimOp> = new Set<SimOp>([
  'writev',
  'truncate',
  'allocate',
  'sync',
  'syncAsync',
  'mkdir',
  'rename',
  'link',
  'unlink',
  'rmdir',
  'syncDir',
]);

/** A Node-style errno error, as node:fs throws them. */
export function errnoError(
  code: string,
  syscall: string,
  filePath: string,
  detail = '',
): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(
    `${code}: ${detail || describeErrno(code)}, ${syscall} '${filePath}'`,
  );
  err.code = code;
  err.syscall = syscall;
  err.path = filePath;
  return err;
}

function describeErrno(code: string): string {
  switch (code) {
    case 'ENOENT':
      return 'no such file or directory';
    case 'EEXIST':
      return 'file already exists';
    case 'EIO':
      return 'i/o error (injected)';
    case 'ENOSPC':
      return 'no space left on device (injected)';
    case 'EACCES':
      return 'permission denied (injected)';
    case 'ECRASH':
      return 'simulated power loss: the file system is down';
    case 'EKILLED':
      return 'simulated kill -9: this process is dead';
    case 'EBADF':
      return 'bad file descriptor';
    case 'EISDIR':
      return 'illegal operation on a directory';
    case 'ENOTDIR':
      return 'not a directory';
    case 'ENOTEMPTY':
      return 'directory not empty';
    case 'EINVAL':
      return 'invalid argument';
    default:
      return code;
  }
}

class ActiveFault implements InjectedFault {
  readonly op: FaultableOp;
  readonly nth: number;
  readonly error: FaultError;
  readonly pathIncludes: string | undefined;
  readonly times: number;
  seen = 0;
  firedCount = 0;
  firstFiring: { path: string; mutationCount: number; mutating: boolean } | undefined;

  constructor(spec: FaultSpec) {
    this.op = spec.op;
    this.nth = spec.nth;
    this.error = spec.error;
    this.pathIncludes = spec.pathIncludes;
    this.times = spec.times ?? 1;
  }
}

export class SimulatedFileSystem implements FileSystem {
  readonly seed: number;
  private readonly rng: Rng;
  private root: DirNode;
  private readonly counts: Record<SimOp, number> = {
    open: 0,
    read: 0,
    writev: 0,
    sync: 0,
    syncAsync: 0,
    truncate: 0,
    allocate: 0,
    size: 0,
    close: 0,
    stat: 0,
    exists: 0,
    readdir: 0,
    mkdir: 0,
    rename: 0,
    link: 0,
    unlink: 0,
    rmdir: 0,
    syncDir: 0,
  };
  private mutations = 0;
  private dataSeq = 0;
  private crashAt: { mutation: number; policy: CrashPolicy } | undefined;
  private captured: SimulatedFileSystem | undefined;
  private down = false;
  private killAt: number | undefined;
  private killedView = false;
  private next: SimulatedFileSystem | undefined;
  private faults: ActiveFault[] = [];
  private readonly trace: MutationInfo[] | undefined;
  private readonly onMutation: ((info: MutationInfo) => void) | undefined;
  private readonly maxHops: number;

  constructor(options: SimulatedFileSystemOptions) {
    this.seed = options.seed >>> 0;
    this.rng = new Rng(this.seed);
    this.root = new DirNode();
    this.trace = options.traceMutations ? [] : undefined;
    this.onMutation = options.onMutation;
    this.maxHops = options.maxSyncAsyncHops ?? 2;
  }

  // ---------------------------------------------------------------- inspection

  /** Calls so far, by kind. A copy. */
  get opCounts(): Readonly<Record<SimOp, number>> {
    return { ...this.counts };
  }

  /** Durability-relevant calls so far (the unit of `crashAfter`). */
  get mutationCount(): number {
    return this.mutations;
  }

  /** Every mutation so far, if `traceMutations` was set (else empty). */
  get mutationTrace(): readonly MutationInfo[] {
    return this.trace ?? [];
  }

  /** True once the power has failed (`crashAfter` reached or `crash()` called). */
  get crashed(): boolean {
    return this.down;
  }

  /** True once this process view was killed (`kill()` or `killAfter` reached). */
  get killed(): boolean {
    return this.killedView;
  }

  // ---------------------------------------------------------------- kill

  /**
   * The process dies now (kill -9): every later call on this view and its handles throws EKILLED;
   * the page cache (written data, unsynced directory entries) stays as it is. Returns the next
   * process's view of the same disk (also `successor()`).
   */
  kill(): SimulatedFileSystem {
    if (this.down) throw new Error('kill(): the power already failed; recover from crashedImage()');
    if (!this.killedView) {
      this.killedView = true;
      const next = new SimulatedFileSystem({ seed: this.rng.nextU32(), maxSyncAsyncHops: this.maxHops });
      next.root = this.root;
      next.dataSeq = this.dataSeq;
      this.next = next;
    }
    return this.next!;
  }

  /** Kills the process after the n-th mutation (counted like `crashAfter`); that call completes. */
  killAfter(n: number): void {
    if (!Number.isSafeInteger(n) || n <= this.mutations) {
      throw new RangeError(
        `killAfter(${n}): must be an integer above the current mutation count ${this.mutations}`,
      );
    }
    this.killAt = n;
  }

  /** The view of the process started after this one was killed. */
  successor(): SimulatedFileSystem {
    if (this.next === undefined) {
      throw new Error(`no kill happened (mutationCount ${this.mutations}, killAfter ${this.killAt})`);
    }
    return this.next;
  }

  // ---------------------------------------------------------------- power loss

  /** What a power cut now would leave on disk, as a new, fully durable file system. */
  crashImage(policy: CrashPolicy = {}): SimulatedFileSystem {
    const rng = new Rng(policy.seed ?? this.rng.nextU32());
    const image = new SimulatedFileSystem({ seed: rng.nextU32(), maxSyncAsyncHops: this.maxHops });
    const copies = new Map<Node, Node>();
    const copyNode = (node: Node): Node => {
      const known = copies.get(node);
      if (known !== undefined) return known;
      if (node.kind === 'file') {
        const content = crashFileContent(node, policy, rng);
        const copy = new FileNode(content, content.clone());
        copies.set(node, copy);
        return copy;
      }
      const copy = new DirNode();
      copies.set(node, copy);
      for (const [name, child] of crashDirEntries(node, policy, rng)) {
        const childCopy = copyNode(child);
        copy.entries.set(name, childCopy);
        copy.durableEntries.set(name, childCopy);
      }
      return copy;
    };
    image.root = copyNode(this.root) as DirNode;
    return image;
  }

  /**
   * Cuts the power after the n-th mutation (counted from creation, see `mutationCount`); that call
   * completes, every later call throws ECRASH.
   */
  crashAfter(n: number, policy: CrashPolicy = {}): void {
    if (!Number.isSafeInteger(n) || n <= this.mutations) {
      throw new RangeError(
        `crashAfter(${n}): must be an integer above the current mutation count ${this.mutations}`,
      );
    }
    this.crashAt = { mutation: n, policy };
  }

  /** Cuts the power now. Returns the captured image. */
  crash(policy: CrashPolicy = {}): SimulatedFileSystem {
    if (this.killedView) {
      throw new Error('crash(): this process was killed; cut the power on its successor()');
    }
    if (!this.down) {
      this.captured = this.crashImage(policy);
      this.down = true;
    }
    return this.captured!;
  }

  /** The image captured when the power failed. */
  crashedImage(): SimulatedFileSystem {
    if (this.captured === undefined) {
      throw new Error(
        `no crash happened (mutationCount ${this.mutations}, crashAfter ${this.crashAt?.mutation})`,
      );
    }
    return this.captured;
  }

  // ---------------------------------------------------------------- faults

  injectFault(spec: FaultSpec): InjectedFault {
    if (!Number.isSafeInteger(spec.nth) || spec.nth < 1) {
      throw new RangeError(`injectFault: nth must be a positive integer, got ${spec.nth}`);
    }
    if (spec.error === 'SHORT_WRITE' && spec.op !== 'writev') {
      throw new RangeError(`injectFault: SHORT_WRITE only applies to writev, not ${spec.op}`);
    }
    if (!FAULTABLE_OPS.includes(spec.op)) throw new RangeError(`injectFault: ${spec.op} cannot fail`);
    const fault = new ActiveFault(spec);
    this.faults.push(fault);
    return fault;
  }

  clearFaults(): void {
    this.faults = [];
  }

  // ---------------------------------------------------------------- FileSystem

  open(filePath: string, options: OpenOptions = {}): FileHandle {
    const p = resolvePath(filePath);
    this.enter('open', filePath);
    const mutating = options.create === true;
    const fault = this.takeFault('open', filePath, mutating);
    try {
      if (fault) throw this.faultError(fault, 'open', filePath);
      const { parent, name } = this.lookupParent(p, 'open', filePath);
      let node = name === '' ? this.root : parent.entries.get(name);
      if (node === undefined) {
        if (!options.create) throw errnoError('ENOENT', 'open', filePath);
        node = new FileNode(ByteContent.empty(), ByteContent.empty());
        linkEntry(parent, name, node);
      } else if (options.create && options.exclusive) {
        throw errnoError('EEXIST', 'open', filePath);
      }
      if (node.kind === 'dir') throw errnoError('EISDIR', 'open', filePath);
      return new SimFileHandle(this, filePath, node, options.readOnly === true);
    } finally {
      if (mutating) this.afterMutation('open', filePath);
    }
  }

  stat(filePath: string): FileStat {
    this.enter('stat', filePath);
    const fault = this.takeFault('stat', filePath);
    if (fault) throw this.faultError(fault, 'stat', filePath);
    const node = this.lookup(resolvePath(filePath), 'stat', filePath);
    return node.kind === 'dir'
      ? { size: 4096, isDirectory: true }
      : { size: node.current.length, isDirectory: false };
  }

  exists(filePath: string): boolean {
    this.enter('exists', filePath);
    return this.tryLookup(resolvePath(filePath)) !== undefined;
  }

  readdir(dirPath: string): string[] {
    this.enter('readdir', dirPath);
    const fault = this.takeFault('readdir', dirPath);
    if (fault) throw this.faultError(fault, 'scandir', dirPath);
    const node = this.lookup(resolvePath(dirPath), 'scandir', dirPath);
    if (node.kind !== 'dir') throw errnoError('ENOTDIR', 'scandir', dirPath);
    return [...node.entries.keys()];
  }

  mkdir(dirPath: string): void {
    this.enter('mkdir', dirPath);
    const fault = this.takeFault('mkdir', dirPath);
    try {
      if (fault) throw this.faultError(fault, 'mkdir', dirPath);
      let dir = this.root;
      for (const part of components(resolvePath(dirPath))) {
        const child = dir.entries.get(part);
        if (child === undefined) {
          const created = new DirNode();
          linkEntry(dir, part, created);
          dir = created;
        } else if (child.kind === 'dir') {
          dir = child;
        } else {
          throw errnoError('EEXIST', 'mkdir', dirPath);
        }
      }
    } finally {
      this.afterMutation('mkdir', dirPath);
    }
  }

  rename(from: string, to: string): void {
    this.enter('rename', from);
    const fault = this.takeFault('rename', `${from} -> ${to}`);
    try {
      if (fault) throw this.faultError(fault, 'rename', from);
      const { src, dst, node } = this.sourceAndTarget('rename', from, to);
      if (dst.name === '') throw errnoError('EBUSY', 'rename', to);
      const existing = dst.parent.entries.get(dst.name);
      if (existing === node) return;
      if (existing !== undefined) {
        if (node.kind === 'file' && existing.kind === 'dir') throw errnoError('EISDIR', 'rename', to);
        if (node.kind === 'dir' && existing.kind === 'file') throw errnoError('ENOTDIR', 'rename', to);
        if (existing.kind === 'dir' && existing.entries.size > 0) throw errnoError('ENOTEMPTY', 'rename', to);
      }
      if (node.kind === 'dir' && this.isAncestor(node, dst.parent)) throw errnoError('EINVAL', 'rename', to);
      if (src.parent === dst.parent) {
        src.parent.entries.delete(src.name);
        src.parent.entries.set(dst.name, node);
        src.parent.pending.push({ kind: 'rename', from: src.name, to: dst.name, node });
      } else {
        unlinkEntry(src.parent, src.name, node);
        linkEntry(dst.parent, dst.name, node);
      }
    } finally {
      this.afterMutation('rename', from);
    }
  }

  link(from: string, to: string): void {
    this.enter('link', from);
    const fault = this.takeFault('link', `${from} -> ${to}`);
    try {
      if (fault) throw this.faultError(fault, 'link', from);
      const { dst, node } = this.sourceAndTarget('link', from, to);
      if (node.kind === 'dir') throw errnoError('EPERM', 'link', from);
      if (dst.name === '' || dst.parent.entries.has(dst.name)) throw errnoError('EEXIST', 'link', to);
      // Both names share one node, so its data (durable and pending) is the same through either.
      linkEntry(dst.parent, dst.name, node);
    } finally {
      this.afterMutation('link', from);
    }
  }

  /** The existing entry `from` and the parent of `to`, as rename and link both need them. */
  private sourceAndTarget(
    syscall: string,
    from: string,
    to: string,
  ): {
    src: { parent: DirNode; name: string };
    dst: { parent: DirNode; name: string };
    node: Node;
  } {
    const src = this.lookupParent(resolvePath(from), syscall, from);
    const dst = this.lookupParent(resolvePath(to), syscall, to);
    const node = src.parent.entries.get(src.name);
    if (node === undefined || src.name === '') throw errnoError('ENOENT', syscall, from);
    return { src, dst, node };
  }

  /** The pool runs it a turn later; its effect, faults and crash semantics are `unlink`'s. */
  unlinkAsync(filePath: string): Promise<void> {
    return new Promise((resolve, reject) =>
      setImmediate(() => {
        try {
          this.unlink(filePath);
          resolve();
        } catch (err) {
          reject(err);
        }
      }),
    );
  }

  unlink(filePath: string): void {
    this.enter('unlink', filePath);
    const fault = this.takeFault('unlink', filePath);
    try {
      if (fault) throw this.faultError(fault, 'unlink', filePath);
      const { parent, name } = this.lookupParent(resolvePath(filePath), 'unlink', filePath);
      const node = parent.entries.get(name);
      if (node === undefined) throw errnoError('ENOENT', 'unlink', filePath);
      if (node.kind === 'dir' || name === '') throw errnoError('EISDIR', 'unlink', filePath);
      unlinkEntry(parent, name, node);
    } finally {
      this.afterMutation('unlink', filePath);
    }
  }

  rmdir(dirPath: string): void {
    this.enter('rmdir', dirPath);
    const fault = this.takeFault('rmdir', dirPath);
    try {
      if (fault) throw this.faultError(fault, 'rmdir', dirPath);
      const { parent, name } = this.lookupParent(resolvePath(dirPath), 'rmdir', dirPath);
      if (name === '') throw errnoError('EBUSY', 'rmdir', dirPath);
      const node = parent.entries.get(name);
      if (node === undefined) throw errnoError('ENOENT', 'rmdir', dirPath);
      if (node.kind !== 'dir') throw errnoError('ENOTDIR', 'rmdir', dirPath);
      if (node.entries.size > 0) throw errnoError('ENOTEMPTY', 'rmdir', dirPath);
      unlinkEntry(parent, name, node);
    } finally {
      this.afterMutation('rmdir', dirPath);
    }
  }

  syncDir(dirPath: string): void {
    this.enter('syncDir', dirPath);
    const fault = this.takeFault('syncDir', dirPath);
    try {
      if (fault) throw this.faultError(fault, 'fsync', dirPath);
      const node = this.lookup(resolvePath(dirPath), 'open', dirPath);
      if (node.kind !== 'dir') throw errnoError('ENOTDIR', 'open', dirPath);
      node.durableEntries = new Map(node.entries);
      node.pending = [];
    } finally {
      this.afterMutation('syncDir', dirPath);
    }
  }

  // ---------------------------------------------------------------- test helpers (uncounted)

  /** Current contents of a file (what a read sees). */
  readFileBytes(filePath: string): Uint8Array {
    const node = this.helperLookup(filePath);
    if (node.kind !== 'file') throw errnoError('EISDIR', 'read', filePath);
    return node.current.slice();
  }

  /** Creates or replaces a file, with its contents and directory entries durable (test setup). */
  writeFileBytes(filePath: string, bytes: Uint8Array): void {
    const parts = components(resolvePath(filePath));
    const name = parts.pop();
    if (name === undefined) throw errnoError('EISDIR', 'open', filePath);
    let dir = this.root;
    for (const part of parts) {
      let child = dir.entries.get(part);
      if (child === undefined) {
        child = new DirNode();
        dir.entries.set(part, child);
        dir.durableEntries.set(part, child);
      }
      if (child.kind !== 'dir') throw errnoError('ENOTDIR', 'open', filePath);
      dir = child;
    }
    const content = ByteContent.of(bytes);
    const node = new FileNode(content, content.clone());
    dir.entries.set(name, node);
    dir.durableEntries.set(name, node);
  }

  /** Flips one bit in both the durable and the current bytes (bit rot on the medium). */
  flipBit(filePath: string, byteOffset: number, bit: number): void {
    const node = this.helperLookup(filePath);
    if (node.kind !== 'file') throw errnoError('EISDIR', 'write', filePath);
    if (!Number.isInteger(bit) || bit < 0 || bit > 7)
      throw new RangeError(`flipBit: bit must be 0..7, got ${bit}`);
    if (byteOffset < 0 || byteOffset >= node.current.length) {
      throw new RangeError(
        `flipBit: offset ${byteOffset} outside ${filePath} (${node.current.length} bytes)`,
      );
    }
    node.current.flipBit(byteOffset, bit);
    if (byteOffset < node.durable.length) node.durable.flipBit(byteOffset, bit);
  }

  /** Number of `pageBytes` pages of a file (the last one may be partial). */
  pageCount(filePath: string, pageBytes = 4096): number {
    return Math.ceil(this.damageTarget(filePath, 'pageCount').current.length / pageBytes);
  }

  /**
   * A whole page reads back as zeros, in the durable and the current bytes (a sector the drive lost,
   * or a page the file system zeroed). The last page is zeroed up to the end of the file.
   */
  zeroPage(filePath: string, pageIndex: number, pageBytes = 4096): void {
    const { node, from, to } = this.pageRange(filePath, pageIndex, pageBytes, 'zeroPage');
    overwriteBoth(node, new Uint8Array(to - from), from);
  }

  /** A whole page reads back as random non-zero bytes (seeded), in durable and current bytes. */
  garblePage(filePath: string, pageIndex: number, seed: number, pageBytes = 4096): void {
    const { node, from, to } = this.pageRange(filePath, pageIndex, pageBytes, 'garblePage');
    overwriteBoth(node, nonZeroBytes(new Rng(seed), to - from), from);
  }

  private damageTarget(filePath: string, helper: string): FileNode {
    const node = this.helperLookup(filePath);
    if (node.kind !== 'file') throw errnoError('EISDIR', helper, filePath);
    return node;
  }

  private pageRange(
    filePath: string,
    pageIndex: number,
    pageBytes: number,
    helper: string,
  ): { node: FileNode; from: number; to: number } {
    const node = this.damageTarget(filePath, helper);
    const from = pageIndex * pageBytes;
    if (!Number.isSafeInteger(pageIndex) || pageIndex < 0 || from >= node.current.length) {
      throw new RangeError(
        `${helper}: page ${pageIndex} of ${pageBytes} bytes is outside ${filePath} (${node.current.length} bytes)`,
      );
    }
    return { node, from, to: Math.min(from + pageBytes, node.current.length) };
  }

  /** Paths of every file under `dir` (default '/'), recursively, sorted. */
  listFiles(dir = '/'): string[] {
    const out: string[] = [];
    const walk = (node: DirNode, at: string): void => {
      for (const [name, child] of node.entries) {
        const p = path.posix.join(at, name);
        if (child.kind === 'file') out.push(p);
        else walk(child, p);
      }
    };
    const start = this.helperLookup(dir);
    if (start.kind === 'dir') walk(start, resolvePath(dir));
    return out.sort();
  }

  /** Syncs every file and directory (a clean shutdown), without counting calls. */
  makeEverythingDurable(): void {
    const seen = new Set<Node>();
    const walk = (node: Node): void => {
      if (seen.has(node)) return;
      seen.add(node);
      if (node.kind === 'file') {
        applyDataOps(node, Number.POSITIVE_INFINITY);
        return;
      }
      node.durableEntries = new Map(node.entries);
      node.pending = [];
      for (const child of node.entries.values()) walk(child);
    };
    walk(this.root);
  }

  // ---------------------------------------------------------------- handle operations

  /** @internal */
  handleRead(h: SimFileHandle, buf: Uint8Array, bufOffset: number, length: number, position: number): number {
    this.enter('read', h.path);
    h.checkOpen('read');
    const fault = this.takeFault('read', h.path);
    if (fault) throw this.faultError(fault, 'read', h.path);
    if (!Number.isSafeInteger(position) || position < 0) throw errnoError('EINVAL', 'read', h.path);
    return h.node.current.read(buf, bufOffset, length, position);
  }

  /** @internal */
  handleWritev(h: SimFileHandle, buffers: readonly Uint8Array[], position: number): number {
    this.enter('writev', h.path);
    const fault = this.takeFault('writev', h.path);
    try {
      h.checkOpen('write');
      h.checkWritable('write');
      if (!Number.isSafeInteger(position) || position < 0) throw errnoError('EINVAL', 'write', h.path);
      const total = buffers.reduce((sum, b) => sum + b.byteLength, 0);
      let count = total;
      if (fault) {
        if (fault.error === 'SHORT_WRITE' || fault.error === 'ENOSPC') {
          count = total === 0 ? 0 : this.rng.int(0, total);
        } else {
          throw this.faultError(fault, 'write', h.path);
        }
      }
      if (count > 0) this.recordWrite(h.node, concatPrefix(buffers, count), position);
      if (fault?.error === 'ENOSPC') throw this.faultError(fault, 'write', h.path);
      return count;
    } finally {
      this.afterMutation('writev', h.path);
    }
  }

  /** @internal */
  handleSync(h: SimFileHandle): void {
    this.enter('sync', h.path);
    const fault = this.takeFault('sync', h.path);
    try {
      h.checkOpen('fdatasync');
      if (fault) {
        forgetUnsynced(h.node, Number.POSITIVE_INFINITY);
        throw this.faultError(fault, 'fdatasync', h.path);
      }
      applyDataOps(h.node, Number.POSITIVE_INFINITY);
    } finally {
      this.afterMutation('sync', h.path);
    }
  }

  /** @internal */
  handleSyncAsync(h: SimFileHandle): Promise<void> {
    try {
      this.enter('syncAsync', h.path);
    } catch (err) {
      return Promise.reject(err);
    }
    const fault = this.takeFault('syncAsync', h.path);
    const upToSeq = this.dataSeq;
    let early: unknown;
    try {
      h.checkOpen('fdatasync');
    } catch (err) {
      early = err;
    } finally {
      this.afterMutation('syncAsync', h.path);
    }
    if (early !== undefined) return Promise.reject(early);
    const hops = this.rng.int(0, this.maxHops + 1);
    return new Promise<void>((resolve, reject) => {
      const settle = (remaining: number): void => {
        if (remaining > 0) {
          setImmediate(() => settle(remaining - 1));
          return;
        }
        // The power failed while the fsync was in flight: it never completed.
        if (this.down) {
          reject(errnoError('ECRASH', 'fdatasync', h.path));
        } else if (this.killedView) {
          // The process died while its fsync was in flight: nothing promises it completed.
          reject(errnoError('EKILLED', 'fdatasync', h.path));
        } else if (fault) {
          forgetUnsynced(h.node, upToSeq);
          reject(this.faultError(fault, 'fdatasync', h.path));
        } else {
          applyDataOps(h.node, upToSeq);
          resolve();
        }
      };
      setImmediate(() => settle(hops));
    });
  }

  /** @internal */
  handleTruncate(h: SimFileHandle, length: number): void {
    this.enter('truncate', h.path);
    const fault = this.takeFault('truncate', h.path);
    try {
      h.checkOpen('ftruncate');
      h.checkWritable('ftruncate');
      if (fault) throw this.faultError(fault, 'ftruncate', h.path);
      if (!Number.isSafeInteger(length) || length < 0) throw errnoError('EINVAL', 'ftruncate', h.path);
      h.node.current.truncate(length);
      h.node.pending.push({ kind: 'truncate', seq: ++this.dataSeq, length });
    } finally {
      this.afterMutation('truncate', h.path);
    }
  }

  /** @internal */
  handleAllocate(h: SimFileHandle, length: number): void {
    this.enter('allocate', h.path);
    const fault = this.takeFault('allocate', h.path);
    try {
      h.checkOpen('write');
      h.checkWritable('write');
      if (!Number.isSafeInteger(length) || length < 0) throw errnoError('EINVAL', 'write', h.path);
      let target = length;
      if (fault) {
        if (fault.error !== 'ENOSPC') throw this.faultError(fault, 'write', h.path);
        const size = h.node.current.length;
        target = length > size ? this.rng.int(size, length) : size;
      }
      if (target > h.node.current.length) {
        h.node.current.extendTo(target);
        h.node.pending.push({ kind: 'allocate', seq: ++this.dataSeq, length: target });
      }
      if (fault) throw this.faultError(fault, 'write', h.path);
    } finally {
      this.afterMutation('allocate', h.path);
    }
  }

  /** @internal */
  handleSize(h: SimFileHandle): number {
    this.enter('size', h.path);
    h.checkOpen('fstat');
    return h.node.current.length;
  }

  /** @internal Closing never throws, not even after a crash: it mutates nothing on disk. */
  handleClose(_h: SimFileHandle): void {
    if (!this.down && !this.killedView) this.counts.close++;
  }

  // ---------------------------------------------------------------- internals

  private recordWrite(node: FileNode, data: Uint8Array, position: number): void {
    node.current.write(data, position);
    node.pending.push({ kind: 'write', seq: ++this.dataSeq, position, data });
  }

  private enter(op: SimOp, filePath: string): void {
    if (this.down) throw errnoError('ECRASH', op, filePath);
    if (this.killedView) throw errnoError('EKILLED', op, filePath);
    this.counts[op]++;
  }

  private afterMutation(op: SimOp, filePath: string): void {
    if (!MUTATIONS.has(op) && op !== 'open') return;
    const info: MutationInfo = { index: ++this.mutations, op, path: filePath };
    this.trace?.push(info);
    if (this.crashAt !== undefined && this.mutations === this.crashAt.mutation)
      this.crash(this.crashAt.policy);
    if (this.killAt !== undefined && this.mutations === this.killAt && !this.down) this.kill();
    this.onMutation?.(info);
  }

  private takeFault(
    op: FaultableOp,
    filePath: string,
    mutating = MUTATIONS.has(op),
  ): ActiveFault | undefined {
    let hit: ActiveFault | undefined;
    for (const fault of this.faults) {
      if (fault.op !== op) continue;
      if (fault.pathIncludes !== undefined && !filePath.includes(fault.pathIncludes)) continue;
      fault.seen++;
      if (hit === undefined && fault.seen >= fault.nth && fault.seen < fault.nth + fault.times) {
        fault.firedCount++;
        fault.firstFiring ??= { path: filePath, mutationCount: this.mutations, mutating };
        hit = fault;
      }
    }
    return hit;
  }

  private faultError(fault: ActiveFault, syscall: string, filePath: string): NodeJS.ErrnoException {
    const code = fault.error === 'SHORT_WRITE' ? 'EIO' : fault.error;
    return errnoError(code, syscall, filePath);
  }

  private tryLookup(p: string): Node | undefined {
    let node: Node = this.root;
    for (const part of components(p)) {
      if (node.kind !== 'dir') return undefined;
      const next: Node | undefined = node.entries.get(part);
      if (next === undefined) return undefined;
      node = next;
    }
    return node;
  }

  private lookup(p: string, syscall: string, shown: string): Node {
    let node: Node = this.root;
    for (const part of components(p)) {
      if (node.kind !== 'dir') throw errnoError('ENOTDIR', syscall, shown);
      const next: Node | undefined = node.entries.get(part);
      if (next === undefined) throw errnoError('ENOENT', syscall, shown);
      node = next;
    }
    return node;
  }

  private lookupParent(p: string, syscall: string, shown: string): { parent: DirNode; name: string } {
    if (p === '/') return { parent: this.root, name: '' };
    const parent = this.lookup(path.posix.dirname(p), syscall, shown);
    if (parent.kind !== 'dir') throw errnoError('ENOTDIR', syscall, shown);
    return { parent, name: path.posix.basename(p) };
  }

  private helperLookup(filePath: string): Node {
    const node = this.tryLookup(resolvePath(filePath));
    if (node === undefined) throw errnoError('ENOENT', 'lookup', filePath);
    return node;
  }

  private isAncestor(candidate: DirNode, node: DirNode): boolean {
    if (candidate === node) return true;
    for (const child of candidate.entries.values()) {
      if (child.kind === 'dir' && this.isAncestor(child, node)) return true;
    }
    return false;
  }
}

class SimFileHandle implements FileHandle {
  private closed = false;

  constructor(
    private readonly fs: SimulatedFileSystem,
    readonly path: string,
    readonly node: FileNode,
    private readonly readOnly: boolean,
  ) {}

  read(buf: Uint8Array, bufOffset: number, length: number, position: number): number {
    return this.fs.handleRead(this, buf, bufOffset, length, position);
  }

  writev(buffers: readonly Uint8Array[], position: number): number {
    return this.fs.handleWritev(this, buffers, position);
  }

  sync(): void {
    this.fs.handleSync(this);
  }

  syncAsync(): Promise<void> {
    return this.fs.handleSyncAsync(this);
  }

  truncate(length: number): void {
    this.fs.handleTruncate(this, length);
  }

  allocate(length: number): void {
    this.fs.handleAllocate(this, length);
  }

  size(): number {
    return this.fs.handleSize(this);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.fs.handleClose(this);
  }

  /** @internal */
  checkOpen(syscall: string): void {
    if (this.closed) throw errnoError('EBADF', syscall, this.path);
  }

  /** @internal */
  checkWritable(syscall: string): void {
    if (this.readOnly) throw errnoError('EBADF', syscall, this.path);
  }
}

// ------------------------------------------------------------------ pure helpers

function resolvePath(p: string): string {
  return path.posix.resolve('/', p);
}

function components(resolved: string): string[] {
  return resolved.split('/').filter((c) => c !== '');
}

function linkEntry(dir: DirNode, name: string, node: Node): void {
  dir.entries.set(name, node);
  dir.pending.push({ kind: 'link', name, node });
}

function unlinkEntry(dir: DirNode, name: string, node: Node): void {
  dir.entries.delete(name);
  dir.pending.push({ kind: 'unlink', name, node });
}

function concatPrefix(buffers: readonly Uint8Array[], count: number): Uint8Array {
  const out = new Uint8Array(count);
  let at = 0;
  for (const b of buffers) {
    if (at >= count) break;
    const n = Math.min(b.byteLength, count - at);
    out.set(n === b.byteLength ? b : b.subarray(0, n), at);
    at += n;
  }
  return out;
}

/** Damage on the medium: the same bytes in what is durable and what reads see (within each length). */
function overwriteBoth(node: FileNode, bytes: Uint8Array, position: number): void {
  node.current.write(bytes, position);
  if (position < node.durable.length) {
    node.durable.write(
      bytes.subarray(0, Math.min(bytes.byteLength, node.durable.length - position)),
      position,
    );
  }
}

function applyOne(content: ByteContent, op: DataOp): void {
  if (op.kind === 'write') content.write(op.data, op.position);
  else if (op.kind === 'truncate') content.truncate(op.length);
  else content.extendTo(op.length);
}

/** Makes the unsynced operations with seq <= upToSeq durable. */
function applyDataOps(node: FileNode, upToSeq: number): void {
  let n = 0;
  while (n < node.pending.length && node.pending[n]!.seq <= upToSeq)
    applyOne(node.durable, node.pending[n++]!);
  if (n > 0) node.pending.splice(0, n);
}

/** A failed fsync: the kernel marks the pages clean, so those writes will never reach the disk. */
function forgetUnsynced(node: FileNode, upToSeq: number): void {
  let n = 0;
  while (n < node.pending.length && node.pending[n]!.seq <= upToSeq) n++;
  if (n > 0) node.pending.splice(0, n);
}

function crashFileContent(node: FileNode, policy: CrashPolicy, rng: Rng): ByteContent {
  if (node.pending.length === 0) return node.durable.clone();
  let mode = policy.data ?? 'random';
  let damage = policy.damage ?? 'either';
  if (mode === 'random') {
    const r = rng.next();
    const w = RANDOM_DATA_WEIGHTS;
    mode =
      r < w.drop ? 'drop' : r < w.drop + w.keep ? 'keep' : r < w.drop + w.keep + w.torn ? 'torn' : 'pages';
  } else if (mode === 'random-prefix') {
    const r = rng.next();
    mode = r < 0.25 ? 'drop' : r < 0.5 ? 'keep' : 'torn';
    damage = policy.damage ?? 'garble';
  } else if (mode === 'torn') {
    damage = policy.damage ?? 'garble';
  }
  if (mode === 'pages') return pageSubsetContent(node, policy, damage, rng);
  return prefixContent(node, mode, policy, damage, rng);
}

/** 'drop', 'keep' and 'torn': an ordered prefix of the unsynced operations. */
function prefixContent(
  node: FileNode,
  mode: 'drop' | 'keep' | 'torn',
  policy: CrashPolicy,
  damage: 'zero' | 'garble' | 'either',
  rng: Rng,
): ByteContent {
  const content = node.durable.clone();
  const ops = node.pending;
  if (mode === 'drop') return content;
  if (mode === 'keep') {
    for (const op of ops) applyOne(content, op);
    return content;
  }
  // Torn: keep ops[0..k) whole, then a torn piece of ops[k] if it is a write.
  const k = rng.int(0, ops.length);
  for (let i = 0; i < k; i++) applyOne(content, ops[i]!);
  const last = ops[k]!;
  if (last.kind !== 'write' || last.data.byteLength === 0) return content;
  const cut = rng.int(0, last.data.byteLength);
  if (cut > 0) content.write(last.data.subarray(0, cut), last.position);
  if (rng.bool(policy.garbleProbability ?? 0.5)) {
    // The sector under the cut was in flight: it holds neither the old nor the new bytes. Only the
    // bytes this write covered are damaged; synced bytes around it are never altered.
    const sector = policy.sectorBytes ?? 512;
    const cutAt = last.position + cut;
    const from = Math.max(last.position, cutAt - (cutAt % sector));
    const to = Math.min(last.position + last.data.byteLength, from - (from % sector) + sector);
    if (to > from) content.write(damageBytes(rng, to - from, damage), from);
  }
  return content;
}

/** Byte ranges [from, to) inside one page, relative to the page start. */
type PageRanges = Array<[number, number]>;

/**
 * 'pages': what page-granular writeback in any order leaves. Each page an unsynced operation touched
 * holds its content as of some moment v in 0..n (v operations applied; 0 = the synced version), chosen
 * per page independently; the size is the size as of another such moment. Then maybe a few pages that
 * unsynced writes covered are damaged (only the bytes those writes covered).
 */
function pageSubsetContent(
  node: FileNode,
  policy: CrashPolicy,
  damage: 'zero' | 'garble' | 'either',
  rng: Rng,
): ByteContent {
  const pageBytes = policy.pageBytes ?? 4096;
  const ops = node.pending;
  const durable = node.durable;
  // Bytes past a file's length are zeros in this representation (a truncate zeroes what it cuts, an
  // extension reads zeros), so a page's version is its durable bytes with the operations applied.
  const lengths: number[] = [durable.length];
  const touchedBy = new Map<number, number[]>();
  const writtenRanges = new Map<number, PageRanges>();
  const touch = (from: number, to: number, opIndex: number, isWrite: boolean): void => {
    for (let page = Math.floor(from / pageBytes); page * pageBytes < to; page++) {
      const start = page * pageBytes;
      let list = touchedBy.get(page);
      if (list === undefined) {
        list = [];
        touchedBy.set(page, list);
      }
      if (list[list.length - 1] !== opIndex) list.push(opIndex);
      if (!isWrite) continue;
      let ranges = writtenRanges.get(page);
      if (ranges === undefined) {
        ranges = [];
        writtenRanges.set(page, ranges);
      }
      ranges.push([Math.max(from, start) - start, Math.min(to, start + pageBytes) - start]);
    }
  };
  let length = durable.length;
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    if (op.kind === 'write') {
      const end = op.position + op.data.byteLength;
      if (end > op.position) touch(op.position, end, i, true);
      length = Math.max(length, end);
    } else if (op.kind === 'truncate') {
      if (op.length < length) touch(op.length, length, i, false);
      length = op.length;
    } else {
      length = Math.max(length, op.length);
    }
    lengths.push(length);
  }
  const finalLength = lengths[pickVersion(rng, ops.length)]!;
  const content = durable.clone();
  content.truncate(finalLength);
  const pages = [...touchedBy.keys()].sort((x, y) => x - y);
  for (const page of pages) {
    const start = page * pageBytes;
    if (start >= finalLength) continue;
    const version = pickVersion(rng, ops.length);
    if (version === 0) continue;
    const buf = new Uint8Array(pageBytes);
    durable.read(buf, 0, pageBytes, start);
    for (const i of touchedBy.get(page)!) {
      if (i >= version) break;
      const op = ops[i]!;
      if (op.kind === 'write') {
        const from = Math.max(op.position, start);
        const to = Math.min(op.position + op.data.byteLength, start + pageBytes);
        buf.set(op.data.subarray(from - op.position, to - op.position), from - start);
      } else if (op.kind === 'truncate') {
        buf.fill(0, Math.max(0, op.length - start));
      }
    }
    content.write(buf.subarray(0, Math.min(pageBytes, finalLength - start)), start);
  }
  if (writtenRanges.size > 0 && rng.bool(policy.damageProbability ?? 0.5)) {
    damageWrittenPages(content, writtenRanges, finalLength, policy, damage, rng);
  }
  return content;
}

/** 0 (the synced version) and n (the newest) a third of the time each, else any moment. */
function pickVersion(rng: Rng, n: number): number {
  const r = rng.next();
  if (r < 1 / 3) return 0;
  if (r < 2 / 3) return n;
  return rng.int(0, n + 1);
}

function damageWrittenPages(
  content: ByteContent,
  writtenRanges: Map<number, PageRanges>,
  fileLength: number,
  policy: CrashPolicy,
  damage: 'zero' | 'garble' | 'either',
  rng: Rng,
): void {
  const pageBytes = policy.pageBytes ?? 4096;
  const sectorBytes = policy.sectorBytes ?? 512;
  const candidates = [...writtenRanges.keys()]
    .filter((p) => p * pageBytes < fileLength)
    .sort((x, y) => x - y);
  const count = rng.int(1, (policy.maxDamagedPages ?? 2) + 1);
  for (let i = 0; i < count && candidates.length > 0; i++) {
    const page = candidates.splice(rng.int(0, candidates.length), 1)[0]!;
    const ranges = writtenRanges.get(page)!;
    // A whole page, or the one sector of it that was on its way to the platter.
    let unitFrom = 0;
    let unitTo = pageBytes;
    if (rng.bool(0.5)) {
      const [from, to] = rng.pick(ranges);
      const sector = Math.floor(rng.int(from, to) / sectorBytes);
      unitFrom = sector * sectorBytes;
      unitTo = unitFrom + sectorBytes;
    }
    const start = page * pageBytes;
    for (const [from, to] of ranges) {
      const a = Math.max(from, unitFrom);
      const b = Math.min(to, unitTo, fileLength - start);
      if (b > a) content.write(damageBytes(rng, b - a, damage), start + a);
    }
  }
}

function damageBytes(rng: Rng, length: number, damage: 'zero' | 'garble' | 'either'): Uint8Array {
  const kind = damage === 'either' ? (rng.bool(0.5) ? 'zero' : 'garble') : damage;
  return kind === 'zero' ? new Uint8Array(length) : nonZeroBytes(rng, length);
}

function nonZeroBytes(rng: Rng, length: number): Uint8Array {
  const out = rng.bytes(length);
  for (let i = 0; i < length; i++) if (out[i] === 0) out[i] = 1 + rng.int(0, 255);
  return out;
}

function crashDirEntries(dir: DirNode, policy: CrashPolicy, rng: Rng): Map<string, Node> {
  const entries = new Map(dir.durableEntries);
  const ops = dir.pending;
  if (ops.length === 0) return entries;
  const mode = policy.dirOps ?? 'random';
  let kept: DirOp[];
  if (mode === 'drop') kept = [];
  else if (mode === 'keep') kept = ops;
  else if (mode === 'prefix') kept = ops.slice(0, rng.int(0, ops.length + 1));
  else kept = ops.filter(() => rng.bool(0.5));
  for (const op of kept) {
    if (op.kind === 'link') {
      entries.set(op.name, op.node);
    } else if (op.kind === 'unlink') {
      if (entries.get(op.name) === op.node) entries.delete(op.name);
    } else {
      if (entries.get(op.from) === op.node) entries.delete(op.from);
      entries.set(op.to, op.node);
    }
  }
  return entries;
}
