import type { FileHandle, FileSystem } from '../io/fileSystem.ts';
import { invariant } from '../lib/assert.ts';
import { ioFatal } from '../lib/errors.ts';
import type { FrameFormat } from './frame.ts';
import type { SegmentInfo } from './types.ts';

/** What the log knows about one segment file. */
export interface SegmentState {
  /** Full path. */
  file: string;
  firstIndex: number;
  /** Byte offset of each record's frame: offsets[i] holds record firstIndex + i. */
  offsets: number[];
  /** Offset just after the last frame (where the next frame goes in the tail). */
  endOffset: number;
  /** The segment's format version, i.e. the layout of its frames (frame.ts). */
  format: FrameFormat;
  /** The seed of the segment's frame CRCs: its salt (version 3), 0 for versions 1 and 2. */
  salt: number;
}

export function segmentNextIndex(seg: SegmentState): number {
  return seg.firstIndex + seg.offsets.length;
}

/** Open read handles kept for sealed segments. */
export const READ_HANDLE_CACHE = 8;

/**
 * Segment bookkeeping: the ordered list of segment files (the last one is the writable tail), where
 * each record lies, and a small LRU of read handles on sealed segments. No durability decisions are
 * made here; the log decides what to create, seal and delete and tells the table.
 */
export class SegmentTable {
  private list: SegmentState[];
  private readonly readHandles = new Map<string, FileHandle>();

  constructor(
    private readonly fs: FileSystem,
    initial: SegmentState[],
  ) {
    this.list = initial;
    this.checkOrder();
  }

  get length(): number {
    return this.list.length;
  }

  get all(): readonly SegmentState[] {
    return this.list;
  }

  get head(): SegmentState | undefined {
    return this.list[0];
  }

  get tail(): SegmentState {
    const tail = this.list.at(-1);
    invariant(tail !== undefined, 'a writable log always has a tail segment');
    return tail;
  }

  isTail(seg: SegmentState): boolean {
    return seg === this.list.at(-1);
  }

  /** The segment holding `index` (the caller checked that the index is in the log). */
  segmentFor(index: number): SegmentState {
    const segs = this.list;
    let lo = 0;
    let hi = segs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (segs[mid]!.firstIndex <= index) lo = mid;
      else hi = mid - 1;
    }
    return segs[lo]!;
  }

  /** [offset, end) of record `index` in `seg`. */
  frameRange(seg: SegmentState, index: number): { offset: number; end: number } {
    const slot = index - seg.firstIndex;
    invariant(slot >= 0 && slot < seg.offsets.length, `record ${index} lies in segment ${seg.file}`);
    const offset = seg.offsets[slot]!;
    const end = slot + 1 < seg.offsets.length ? seg.offsets[slot + 1]! : seg.endOffset;
    return { offset, end };
  }

  /** Appends a new (empty) tail; its first index continues the old tail's records. */
  pushTail(seg: SegmentState): void {
    const prev = this.list.at(-1);
    invariant(
      prev === undefined || segmentNextIndex(prev) === seg.firstIndex,
      `segment ${seg.firstIndex} continues the previous one`,
    );
    invariant(seg.offsets.length === 0, 'a new tail segment is empty');
    this.list.push(seg);
  }

  /** Records frames just written, in order, at the tail's end. */
  recordWrites(frames: readonly Uint8Array[]): void {
    const tail = this.tail;
    let offset = tail.endOffset;
    for (const frame of frames) {
      tail.offsets.push(offset);
      offset += frame.byteLength;
    }
    tail.endOffset = offset;
  }

  /** Whether dropping records below `newFirst` frees at least one segment file. */
  frontTruncationFreesSegment(newFirst: number): boolean {
    return this.list.length >= 2 && this.list[1]!.firstIndex <= newFirst;
  }

  /** Removes (and returns) the segments wholly below `newFirst`; the tail always stays. */
  dropBelow(newFirst: number): SegmentState[] {
    const doomed: SegmentState[] = [];
    while (this.frontTruncationFreesSegment(newFirst)) doomed.push(this.list.shift()!);
    for (const seg of doomed) this.dropReadHandle(seg.file);
    return doomed;
  }

  /** Removes (and returns, newest first) the segments starting above `newNext`; one always stays. */
  popAbove(newNext: number): SegmentState[] {
    const popped: SegmentState[] = [];
    while (this.list.length >= 2 && this.list.at(-1)!.firstIndex > newNext) {
      const seg = this.list.pop()!;
      this.dropReadHandle(seg.file);
      popped.push(seg);
    }
    return popped;
  }

  /** Replaces the whole table (reset). Returns the segments that are no longer part of it. */
  replaceAll(next: SegmentState[]): SegmentState[] {
    const kept = new Set(next);
    const gone = this.list.filter((s) => !kept.has(s));
    for (const seg of gone) this.dropReadHandle(seg.file);
    this.list = next;
    this.checkOrder();
    return gone;
  }

  info(): SegmentInfo[] {
    return this.list.map((seg, i) => ({
      file: seg.file,
      firstIndex: seg.firstIndex,
      nextIndex: segmentNextIndex(seg),
      bytes: seg.endOffset,
      sealed: i < this.list.length - 1,
      formatVersion: seg.format,
    }));
  }

  /** A cached read-only handle on a sealed segment (least recently used ones are closed). */
  readHandle(seg: SegmentState): FileHandle {
    let handle = this.readHandles.get(seg.file);
    if (handle) {
      // Refresh its position in the LRU order.
      this.readHandles.delete(seg.file);
      this.readHandles.set(seg.file, handle);
      return handle;
    }
    try {
      handle = this.fs.open(seg.file, { readOnly: true });
    } catch (err) {
      throw ioFatal(`opening ${seg.file}`, err, { file: seg.file });
    }
    this.readHandles.set(seg.file, handle);
    if (this.readHandles.size > READ_HANDLE_CACHE) {
      const [oldestFile, oldest] = this.readHandles.entries().next().value as [string, FileHandle];
      this.readHandles.delete(oldestFile);
      oldest.close();
    }
    return handle;
  }

  dropReadHandle(file: string): void {
    const handle = this.readHandles.get(file);
    if (handle) {
      this.readHandles.delete(file);
      handle.close();
    }
  }

  closeReadHandles(): void {
    for (const handle of this.readHandles.values()) handle.close();
    this.readHandles.clear();
  }

  private checkOrder(): void {
    for (let i = 1; i < this.list.length; i++) {
      invariant(
        segmentNextIndex(this.list[i - 1]!) === this.list[i]!.firstIndex,
        `segment ${this.list[i]!.file} continues segment ${this.list[i - 1]!.file}`,
      );
    }
  }
}
