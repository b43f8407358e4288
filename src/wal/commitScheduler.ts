import { invariant } from '../lib/assert.ts';
import { reraiseApart } from '../lib/reraise.ts';
import { runAsMicrotask } from '../lib/waiters.ts';

/** Group-commit rounds chained as microtasks before one yields to the event loop. */
export const MAX_CHAINED_ROUNDS = 4;

/** Called once the caller's records are durable (no argument) or the log failed (the error). */
export type SyncCallback = (err?: unknown) => void;

/**
 * Every caller between two round starts: one group, released together. Groups are pooled and
 * linked (no array per list), and the first callback has a field of its own, so a caller that
 * passes a callback costs no allocation (V8 gives an emptied array a new backing store on its
 * next push, so "reused" arrays would not do). A promise is made only when a caller asks for one.
 */
interface WaiterGroup {
  /** Released once the log's reached index is at least this (durable, or truncated away). */
  target: number;
  /** Rounds started before this group was created; callers join it until the next round starts. */
  round: number;
  /** The first callback (the usual case: one pipeline per log), then any others. */
  callback: SyncCallback | undefined;
  more: SyncCallback[] | undefined;
  moreCount: number;
  promise: Promise<void> | undefined;
  resolve: (() => void) | undefined;
  reject: ((err: unknown) => void) | undefined;
  /** Set when the group is released: undefined (durable) or the failure. */
  error: unknown;
  /** The next group in whichever list holds this one (waiting, released, pool). */
  next: WaiterGroup | undefined;
}

/** Groups kept for reuse. */
const GROUP_POOL_LIMIT = 8;

/** A singly linked FIFO of groups. */
class GroupList {
  head: WaiterGroup | undefined;
  tail: WaiterGroup | undefined;
  size = 0;

  push(group: WaiterGroup): void {
    group.next = undefined;
    if (this.tail === undefined) this.head = group;
    else this.tail.next = group;
    this.tail = group;
    this.size++;
  }

  shift(): WaiterGroup | undefined {
    const group = this.head;
    if (group === undefined) return undefined;
    this.head = group.next;
    if (this.head === undefined) this.tail = undefined;
    group.next = undefined;
    this.size--;
    return group;
  }

  /** Empties the list, returning its first group (the rest follow through `next`). */
  takeAll(): WaiterGroup | undefined {
    const head = this.head;
    this.head = undefined;
    this.tail = undefined;
    this.size = 0;
    return head;
  }
}

function addCallback(group: WaiterGroup, done: SyncCallback): void {
  if (group.callback === undefined) {
    group.callback = done;
    return;
  }
  group.more ??= [];
  group.more[group.moreCount++] = done;
}

/**
 * Calls one waiter. Callbacks must not throw, but one that does must neither stop the release of
 * the others (they would wait forever: an app that survives the throw through an
 * uncaughtException handler would hang) nor disturb the log's bookkeeping around the release: the
 * throw is re-raised in a microtask of its own, where it surfaces as an uncaught exception.
 */
function callOne(done: SyncCallback, err: unknown, failed: boolean): void {
  try {
    if (failed) done(err);
    else done();
  } catch (thrown) {
    reraiseApart(thrown);
  }
}

/** What the scheduler needs from its log. */
export interface CommitRoundHost {
  /**
   * One group commit: write what is buffered, fsync once, call `settle()` / `rejectAll()`, then
   * `end()` exactly once (synchronously or later). Must not throw.
   */
  runRound(end: () => void): void;
  /** The index every waiter is compared with (durable index, or written index without fsyncs). */
  reached(): number;
  /** True once the log is closed: no new round starts. */
  closed(): boolean;
}

/**
 * The group-commit scheduler: who waits for what, and when the next commit round runs.
 *
 * `sync()` callers become waiters on a target index. Every caller until the next round starts
 * joins one group (64 callers: one group, one release). A round starts as a microtask, so every
 * append and sync of the current turn joins it without paying an event-loop turn per commit;
 * after MAX_CHAINED_ROUNDS in a row it goes through setImmediate instead, so a log under constant
 * load cannot starve timers and I/O callbacks. At most one round runs at a time; callers arriving
 * while one is in flight (e.g. waiting for a thread-pool fsync) are covered by the next.
 *
 * Callers choose the form: `waitFor` (a promise) or `waitForCallback` (a callback, for hot paths:
 * measured on the consensus bench, a promise and its reactions per append and per round were a
 * large share of the allocation per block, and young-generation collections follow allocation).
 *
 * The scheduler does no I/O: the host's `runRound` does, and reports back with `settle` (release
 * every waiter whose target is reached) or `rejectAll` (a latched failure).
 */
export class CommitScheduler {
  private readonly waiters = new GroupList();
  private readonly pool = new GroupList();
  /** Groups released, waiting for their microtask. */
  private readonly released = new GroupList();
  private deliveryScheduled = false;
  private flushScheduled = false;
  private started = 0;
  private running = false;
  /** Made only when someone asks for `roundInFlight` (close, retiring a handle). */
  private roundDone: Promise<void> | undefined;
  private resolveRoundDone: (() => void) | undefined;
  /**
   * Rounds started as microtasks since the event loop last ran. Only rounds that never leave the
   * microtask queue (synchronous fsyncs, no-sync mode) can reach the cap.
   */
  private chainedRounds = 0;

  constructor(private readonly host: CommitRoundHost) {}

  /** Rounds started so far. */
  get roundsStarted(): number {
    return this.started;
  }

  /** The round running now, if any (a close waits for it; a retired handle closes after it). */
  get roundInFlight(): Promise<void> | undefined {
    if (!this.running) return undefined;
    if (this.roundDone === undefined) {
      this.roundDone = new Promise<void>((resolve) => {
        this.resolveRoundDone = resolve;
      });
    }
    return this.roundDone;
  }

  /** Callers waiting (groups of callers that share a round). */
  get waiting(): number {
    return this.waiters.size;
  }

  /** Resolves once `reached() >= target`; schedules a round if needed. */
  waitFor(target: number): Promise<void> {
    if (this.host.reached() >= target) return Promise.resolve();
    const group = this.groupFor(target);
    if (group.promise === undefined) {
      group.promise = new Promise<void>((resolve, reject) => {
        group.resolve = resolve;
        group.reject = reject;
      });
    }
    return group.promise;
  }

  /**
   * As `waitFor`, but `done` is called (in a microtask, like a promise reaction: after the round
   * that covers `target`, or at once when it is already reached) instead of settling a promise.
   * `done` must not throw (one that does is re-raised as an uncaught exception, after every other
   * caller of its round was called). `startNow`: when no round is running or scheduled, the round starts
   * inside this call (the host writes and issues its fsync now) rather than in a microtask: for a
   * single writer that batches on its own, the microtask only delays its fsync behind whatever
   * else the turn does (measured on the consensus bench: every lane's admission and encoding in
   * that turn ran before the first lane's write). The chained-rounds cap still applies.
   */
  waitForCallback(target: number, done: SyncCallback, startNow = false): void {
    if (this.host.reached() >= target) {
      const group = this.takeGroup();
      addCallback(group, done);
      this.deliver(group, undefined);
      return;
    }
    this.groupFor(target, done, startNow);
  }

  /**
   * The group of callers the next round will cover, raised to `target`; `done` (if any) joins it
   * before a round is requested, since with `startNow` the round may run inside this call.
   */
  private groupFor(target: number, done?: SyncCallback, startNow = false): WaiterGroup {
    const last = this.waiters.tail;
    if (last !== undefined && last.round === this.started) {
      // The round that will cover `last` has not started: it covers this caller too.
      if (target > last.target) last.target = target;
      if (done !== undefined) addCallback(last, done);
      return last;
    }
    const group = this.takeGroup();
    group.target = target;
    group.round = this.started;
    if (done !== undefined) addCallback(group, done);
    this.waiters.push(group);
    this.requestRound(startNow);
    return group;
  }

  private takeGroup(): WaiterGroup {
    return (
      this.pool.shift() ?? {
        target: 0,
        round: 0,
        callback: undefined,
        more: undefined,
        moreCount: 0,
        promise: undefined,
        resolve: undefined,
        reject: undefined,
        error: undefined,
        next: undefined,
      }
    );
  }

  /**
   * Asks for a round (no-op if one is already scheduled; one in flight reschedules when it ends).
   * `startNow`: start it inside this call when nothing is running (see `waitForCallback`).
   */
  requestRound(startNow = false): void {
    if (this.flushScheduled || this.host.closed()) return;
    this.flushScheduled = true;
    if (!this.running) this.schedule(startNow);
  }

  /** The round resumed from an I/O callback (a fresh event-loop task): the microtask chain is broken. */
  resumedFromEventLoop(): void {
    this.chainedRounds = 0;
  }

  /**
   * Releases every waiter whose target is reached; asks for another round if any remain. Callers
   * hear it in a microtask, or right here with `now` — for a host that settles from a fresh task
   * (an fsync's completion) as the last step of its bookkeeping, where a caller may safely append
   * and sync again at once; this saves a microtask per round.
   */
  settle(now = false): void {
    if (this.waiters.size === 0) return;
    const reached = this.host.reached();
    let group = this.waiters.takeAll();
    // Released now: linked through `next` once the waiting list is consistent again.
    let nowHead: WaiterGroup | undefined;
    let nowTail: WaiterGroup | undefined;
    while (group !== undefined) {
      const following = group.next;
      if (group.target > reached) {
        this.waiters.push(group);
      } else if (now) {
        group.next = undefined;
        group.error = undefined;
        if (nowTail === undefined) nowHead = group;
        else nowTail.next = group;
        nowTail = group;
      } else {
        this.deliver(group, undefined);
      }
      group = following;
    }
    if (this.waiters.size > 0) this.requestRound();
    // A callback may append and sync again (a new group) or settle this log again: the groups
    // released here are off every list already.
    while (nowHead !== undefined) {
      const following: WaiterGroup | undefined = nowHead.next;
      this.release(nowHead);
      nowHead = following;
    }
  }

  /** Lowers every target above `limit` (records above it were truncated away). */
  clamp(limit: number): void {
    for (let w = this.waiters.head; w !== undefined; w = w.next) if (w.target > limit) w.target = limit;
  }

  rejectAll(err: unknown): void {
    let group = this.waiters.takeAll();
    while (group !== undefined) {
      const following = group.next;
      this.deliver(group, err);
      group = following;
    }
  }

  /**
   * Queues a group's release for a microtask, as a promise reaction would be: callers never run
   * inside the log's own bookkeeping (a round, a truncation), and may append and sync again at once.
   */
  private deliver(group: WaiterGroup, err: unknown): void {
    group.error = err;
    this.released.push(group);
    if (!this.deliveryScheduled) {
      this.deliveryScheduled = true;
      runAsMicrotask(this.releaseQueued);
    }
  }

  private readonly releaseQueued = (): void => {
    this.deliveryScheduled = false;
    // Detached first: a callback may queue more (a later round, a rejection) for the next microtask.
    let group = this.released.takeAll();
    while (group !== undefined) {
      const following: WaiterGroup | undefined = group.next;
      this.release(group);
      group = following;
    }
  };

  /** Settles one group (every callback, then its promise) and returns it to the pool. */
  private release(group: WaiterGroup): void {
    const err = group.error;
    const failed = err !== undefined;
    const callback = group.callback;
    const more = group.more;
    const moreCount = group.moreCount;
    const promised = group.promise !== undefined;
    const resolve = group.resolve;
    const reject = group.reject;
    // Recycled before anyone is called: a callback may take a group from the pool at once.
    group.callback = undefined;
    group.moreCount = 0;
    group.promise = undefined;
    group.resolve = undefined;
    group.reject = undefined;
    group.error = undefined;
    if (more !== undefined) group.more = undefined;
    if (this.pool.size < GROUP_POOL_LIMIT) this.pool.push(group);
    if (callback !== undefined) callOne(callback, err, failed);
    if (more !== undefined) {
      for (let i = 0; i < moreCount; i++) callOne(more[i]!, err, failed);
    }
    if (promised) {
      if (failed) reject!(err);
      else resolve!();
    }
  }

  private schedule(startNow = false): void {
    if (this.chainedRounds < MAX_CHAINED_ROUNDS) {
      this.chainedRounds++;
      if (startNow) this.start();
      else runAsMicrotask(this.start);
    } else {
      setImmediate(this.startFromLoop);
    }
  }

  private readonly startFromLoop = (): void => {
    this.chainedRounds = 0;
    this.start();
  };

  private readonly start = (): void => {
    this.flushScheduled = false;
    if (this.host.closed()) return;
    invariant(!this.running, 'group-commit rounds never overlap');
    this.started++;
    this.running = true;
    this.host.runRound(this.end);
  };

  /** The host's round is over (called exactly once per round). */
  private readonly end = (): void => {
    invariant(this.running, 'a round ends once');
    this.running = false;
    const resolveRoundDone = this.resolveRoundDone;
    this.roundDone = undefined;
    this.resolveRoundDone = undefined;
    resolveRoundDone?.();
    // Callers released by the round that just ended have already appended and asked for the
    // next one (synchronously in their callbacks, or in promise continuations that ran before a
    // host's asynchronous end): schedule it.
    if (this.flushScheduled) this.schedule();
  };
}
