import * as nodeFs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { FileHandle, FileStat, FileSystem, OpenOptions } from '../../src/io/fileSystem.ts';
import { realFileSystem } from '../../src/io/realFileSystem.ts';
import { CommitScheduler } from '../../src/wal/commitScheduler.ts';
import { encodeFrame } from '../../src/wal/frame.ts';
import {
  decodeSegmentHeader,
  encodeSegmentHeader,
  SEGMENT_HEADER_BYTES,
  segmentFileName,
} from '../../src/wal/segmentFile.ts';

/** A fresh directory under the OS temp dir; `cleanup` removes it. */
export function tempDir(prefix = 'cairn-wal-'): { dir: string; cleanup: () => void } {
  const dir = nodeFs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => nodeFs.rmSync(dir, { recursive: true, force: true }) };
}

export type FsCall =
  | 'open'
  | 'read'
  | 'writev'
  | 'sync'
  | 'syncAsync'
  | 'truncate'
  | 'allocate'
  | 'unlink'
  | 'link'
  | 'rename'
  | 'mkdir'
  | 'rmdir'
  | 'syncDir';

/** Calls that change what is (or will be) on disk: the places a crash can happen. */
export const MUTATING_CALLS: ReadonlySet<FsCall> = new Set([
  'writev',
  'sync',
  'syncAsync',
  'truncate',
  'allocate',
  'unlink',
  'link',
  'rename',
  'mkdir',
  'rmdir',
  'syncDir',
]);

export interface CallEvent {
  call: FsCall;
  path: string;
  phase: 'start' | 'end';
}

/**
 * Delegates to the real file system, recording every call, and can make a chosen call fail
 * (`failWhen`) or "kill the process" after N mutating calls (`crashAfterMutations`): from then on
 * every call throws and every handle is closed, as if the process died (the OS keeps what was
 * written; unwritten buffers are simply gone).
 */
export class WrappingFileSystem implements FileSystem {
  readonly counts = new Map<FsCall, number>();
  readonly events: CallEvent[] = [];
  recordEvents = false;
  /** Return an error to make this call fail; called before delegating. */
  failWhen: ((call: FsCall, path: string) => Error | undefined) | undefined;
  crashAfterMutations: number | undefined;
  mutations = 0;
  crashed = false;
  /** Bytes returned by every `read` through this file system's handles. */
  bytesRead = 0;
  private readonly handles = new Set<FileHandle>();

  constructor(private readonly inner: FileSystem = realFileSystem) {}

  count(call: FsCall): number {
    return this.counts.get(call) ?? 0;
  }

  fsyncs(): number {
    return this.count('sync') + this.count('syncAsync');
  }

  /** Closes every handle and makes every later call fail: the process is gone. */
  kill(): void {
    this.crashed = true;
    for (const h of this.handles) h.close();
    this.handles.clear();
  }

  before(call: FsCall, p: string): void {
    if (this.crashed) throw Object.assign(new Error(`simulated crash: ${call} ${p}`), { code: 'ECRASHED' });
    if (MUTATING_CALLS.has(call) && this.crashAfterMutations !== undefined) {
      if (this.mutations >= this.crashAfterMutations) {
        this.kill();
        throw Object.assign(new Error(`simulated crash at ${call} ${p}`), { code: 'ECRASHED' });
      }
      this.mutations++;
    }
    const err = this.failWhen?.(call, p);
    if (err) throw err;
    this.counts.set(call, this.count(call) + 1);
    if (this.recordEvents) this.events.push({ call, path: p, phase: 'start' });
  }

  after(call: FsCall, p: string): void {
    if (this.recordEvents) this.events.push({ call, path: p, phase: 'end' });
  }

  wrap<T>(call: FsCall, p: string, fn: () => T): T {
    this.before(call, p);
    const out = fn();
    this.after(call, p);
    return out;
  }

  open(p: string, options?: OpenOptions): FileHandle {
    const handle = this.wrap('open', p, () => this.inner.open(p, options));
    const wrapped = new WrappingHandle(this, handle);
    this.handles.add(wrapped);
    return wrapped;
  }

  forget(handle: FileHandle): void {
    this.handles.delete(handle);
  }

  stat(p: string): FileStat {
    return this.wrap('open', p, () => this.inner.stat(p));
  }

  exists(p: string): boolean {
    if (this.crashed) throw Object.assign(new Error('simulated crash'), { code: 'ECRASHED' });
    return this.inner.exists(p);
  }

  readdir(p: string): string[] {
    if (this.crashed) throw Object.assign(new Error('simulated crash'), { code: 'ECRASHED' });
    return this.inner.readdir(p);
  }

  mkdir(p: string): void {
    this.wrap('mkdir', p, () => this.inner.mkdir(p));
  }

  rename(from: string, to: string): void {
    this.wrap('rename', from, () => this.inner.rename(from, to));
  }

  /** Counted, failed and crashed as an `unlink` (it is one, run on the thread pool). */
  async unlinkAsync(p: string): Promise<void> {
    this.before('unlink', p);
    await this.inner.unlinkAsync(p);
    this.after('unlink', p);
  }

  link(a: string, b: string): void {
    this.wrap('link', a, () => this.inner.link(a, b));
  }

  unlink(p: string): void {
    this.wrap('unlink', p, () => this.inner.unlink(p));
  }

  rmdir(p: string): void {
    this.wrap('rmdir', p, () => this.inner.rmdir(p));
  }

  syncDir(p: string): void {
    this.wrap('syncDir', p, () => this.inner.syncDir(p));
  }
}

class WrappingHandle implements FileHandle {
  private closed = false;

  constructor(
    private readonly owner: WrappingFileSystem,
    private readonly inner: FileHandle,
  ) {}

  get path(): string {
    return this.inner.path;
  }

  read(buf: Uint8Array, bufOffset: number, length: number, position: number): number {
    const n = this.owner.wrap('read', this.path, () => this.inner.read(buf, bufOffset, length, position));
    this.owner.bytesRead += n;
    return n;
  }

  writev(buffers: readonly Uint8Array[], position: number): number {
    return this.owner.wrap('writev', this.path, () => this.inner.writev(buffers, position));
  }

  sync(): void {
    this.owner.wrap('sync', this.path, () => this.inner.sync());
  }

  async syncAsync(): Promise<void> {
    this.owner.before('syncAsync', this.path);
    await this.inner.syncAsync();
    this.owner.after('syncAsync', this.path);
  }

  truncate(length: number): void {
    this.owner.wrap('truncate', this.path, () => this.inner.truncate(length));
  }

  allocate(length: number): void {
    this.owner.wrap('allocate', this.path, () => this.inner.allocate(length));
  }

  size(): number {
    return this.owner.wrap('read', this.path, () => this.inner.size());
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.owner.forget(this);
    this.inner.close();
  }
}

export function errno(code: string, message = code): Error {
  return Object.assign(new Error(message), { code });
}

export const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
export const dec = (b: Uint8Array): string => new TextDecoder().decode(b);

/** Deterministic payload of `bytes` bytes for record `index`. */
export function payloadFor(index: number, bytes: number, salt = 0): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = (index * 31 + i * 7 + salt * 13) & 0xff;
  return out;
}

/**
 * A log as an earlier build wrote it: one version-1 segment at `firstIndex` holding `payloads` as
 * 16-byte-header frames, zero-padded to `segmentBytes`, and no meta (written durably, for setup).
 */
export function writeV1Segment(
  fs: { writeFileBytes(file: string, bytes: Uint8Array): void },
  dir: string,
  firstIndex: number,
  payloads: readonly Uint8Array[],
  segmentBytes: number,
): string {
  const frames = payloads.map((p, i) => encodeFrame(firstIndex + i, p, 0, 1));
  const bytes = new Uint8Array(segmentBytes);
  bytes.set(encodeSegmentHeader(firstIndex, 1), 0);
  let at = SEGMENT_HEADER_BYTES;
  for (const f of frames) {
    bytes.set(f, at);
    at += f.byteLength;
  }
  const file = `${dir}/${segmentFileName(firstIndex)}`;
  fs.writeFileBytes(file, bytes);
  return file;
}

/**
 * A complete frame for record `index` as the segment whose first bytes are `segmentStart` would hold
 * it: that segment's format and salt (so it verifies there, as a frame the log wrote would).
 */
export function frameForSegment(
  segmentStart: Uint8Array,
  index: number,
  payload: Uint8Array,
  syncedNext = 0,
): Uint8Array {
  const header = decodeSegmentHeader(segmentStart.subarray(0, SEGMENT_HEADER_BYTES));
  if ('problem' in header) throw new Error(`not a segment header: ${header.problem}`);
  return encodeFrame(index, payload, syncedNext, header.format, header.salt);
}

/**
 * A commit scheduler over a fake log whose rounds complete from a fresh task (as an fsync does):
 * the round makes everything appended so far durable, then settles with `settleNow` (true: callers
 * released inside the settle, as the WAL does from an fsync completion) before it ends.
 */
export function immediateRoundLog(settleNow: boolean) {
  const log = {
    next: 0,
    durable: 0,
    rounds: 0,
    append(): void {
      log.next++;
    },
  };
  const scheduler = new CommitScheduler({
    runRound: (end) => {
      log.rounds++;
      const target = log.next;
      setImmediate(() => {
        log.durable = target;
        scheduler.settle(settleNow);
        end();
      });
    },
    reached: () => log.durable,
    closed: () => false,
  });
  return { log, scheduler };
}
