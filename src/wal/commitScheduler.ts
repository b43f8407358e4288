import { invariant } from '../lib/assert.ts';
import { runAsMicrotask } from '../lib/waiters.ts';

/** Group-commit rounds chained as microtasks before one yields to the event loop. */
export const MAX_CHAINED_ROUNDS = 4;

/** Called once the caller's records are durable (no argument) or the log failed (the error). */
export type SyncCallback = (err?: unknown) => void;

/**
 * Every caller between two round starts: one group, released together. Groups are pooled, and
 * callers given as callbacks are kept in a reused array, so a caller that passes a callback costs no
 * allocation; a promise is made only when some caller of the group asks for one.
 */
interface WaiterGroup {
  /** Released once the log's reached index is at least this (durable, or truncated away). */
  target: number;
  /** Rounds started before this group was created; callers join it until the next round starts. */
  round: number;
  callbacks: SyncCallback[];
  promise: Promise<void> | undefined;
  resolve: (() => void) | undefined;
  reject: ((err: unknown) => void) | undefined;
  /** Set when the group is released: undefined (durable) or the failure. */
  error: unknown;
}

/** Groups kept for reuse (each keeps its callback array's capacity). */
const GROUP_POOL_LIMIT = 8;

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
  private waiters: WaiterGroup[] = [];
  private readonly pool: WaiterGroup[] = [];
  /** Groups released, waiting for their microtask; and the list being delivered (both reused). */
  private released: WaiterGroup[] = [];
  private releasing: WaiterGroup[] = [];
  private deliveryScheduled = false;
  /** Scratch list of `settle(true)` (reused; taken while its callbacks run). */
  private releasedNow: WaiterGroup[] | undefined;
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
    return this.waiters.length;
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
   * `done` must not throw.
   */
  waitForCallback(target: number, done: SyncCallback): void {
    if (this.host.reached() >= target) {
      const group = this.takeGroup();
      group.callbacks.push(done);
      this.deliver(group, undefined);
      return;
    }
    this.groupFor(target).callbacks.push(done);
  }

  /** The group of callers the next round will cover, raised to `target`. */
  private groupFor(target: number): WaiterGroup {
    const last = this.waiters.at(-1);
    if (last !== undefined && last.round === this.started) {
      // The round that will cover `last` has not started: it covers this caller too.
      if (target > last.target) last.target = target;
      return last;
    }
    const group = this.takeGroup();
    group.target = target;
    group.round = this.started;
    this.waiters.push(group);
    this.requestRound();
    return group;
  }

  private takeGroup(): WaiterGroup {
    return (
      this.pool.pop() ?? {
        target: 0,
        round: 0,
        callbacks: [],
        promise: undefined,
        resolve: undefined,
        reject: undefined,
        error: undefined,
      }
    );
  }

  /** Asks for a round (no-op if one is already scheduled; one in flight reschedules when it ends). */
  requestRound(): void {
    if (this.flushScheduled || this.host.closed()) return;
    this.flushScheduled = true;
    if (!this.running) this.schedule();
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
    const waiters = this.waiters;
    if (waiters.length === 0) return;
    const reached = this.host.reached();
    let kept = 0;
    for (let i = 0; i < waiters.length; i++) {
      const group = waiters[i]!;
      if (group.target > reached) waiters[kept++] = group;
      else if (now) {
        this.releasedNow ??= [];
        this.releasedNow.push(group);
      } else this.deliver(group, undefined);
    }
    waiters.length = kept;
    if (kept > 0) this.requestRound();
    const releasedNow = this.releasedNow;
    if (releasedNow !== undefined && releasedNow.length > 0) {
      // Taken off the scheduler first: a callback may settle this log again (its own next round).
      this.releasedNow = undefined;
      for (let i = 0; i < releasedNow.length; i++) {
        releasedNow[i]!.error = undefined;
        this.release(releasedNow[i]!);
      }
      releasedNow.length = 0;
      this.releasedNow = releasedNow;
    }
  }

  /** Lowers every target above `limit` (records above it were truncated away). */
  clamp(limit: number): void {
    for (const w of this.waiters) if (w.target > limit) w.target = limit;
  }

  rejectAll(err: unknown): void {
    const waiters = this.waiters;
    for (let i = 0; i < waiters.length; i++) this.deliver(waiters[i]!, err);
    waiters.length = 0;
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
    // Swap the two reused lists: a callback may queue more (a later round, a rejection).
    const groups = this.released;
    this.released = this.releasing;
    this.releasing = groups;
    for (let i = 0; i < groups.length; i++) this.release(groups[i]!);
    groups.length = 0;
  };

  /** Settles one group (every callback, then its promise) and returns it to the pool. */
  private release(group: WaiterGroup): void {
    const callbacks = group.callbacks;
    const err = group.error;
    const failed = err !== undefined;
    for (let i = 0; i < callbacks.length; i++) {
      if (failed) callbacks[i]!(err);
      else callbacks[i]!();
    }
    if (group.promise !== undefined) {
      if (failed) group.reject!(err);
      else group.resolve!();
    }
    callbacks.length = 0;
    group.promise = undefined;
    group.resolve = undefined;
    group.reject = undefined;
    group.error = undefined;
    if (this.pool.length < GROUP_POOL_LIMIT) this.pool.push(group);
  }

  private schedule(): void {
    if (this.chainedRounds < MAX_CHAINED_ROUNDS) {
      this.chainedRounds++;
      runAsMicrotask(this.start);
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
