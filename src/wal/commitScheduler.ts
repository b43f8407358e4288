import { invariant } from '../lib/assert.ts';

/** Group-commit rounds chained as microtasks before one yields to the event loop. */
export const MAX_CHAINED_ROUNDS = 4;

interface Waiter {
  /** Resolves once the log's reached index is at least this (durable, or truncated away). */
  target: number;
  /** Rounds started before this waiter was created; callers join it until the next round starts. */
  round: number;
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** What the scheduler needs from its log. */
export interface CommitRoundHost {
  /** One group commit: write what is buffered, fsync once, then call `settle()` / `rejectAll()`. */
  runRound(): Promise<void>;
  /** The index every waiter is compared with (durable index, or written index without fsyncs). */
  reached(): number;
  /** True once the log is closed: no new round starts. */
  closed(): boolean;
}

/**
 * The group-commit scheduler: who waits for what, and when the next commit round runs.
 *
 * `sync()` callers become waiters on a target index. Every caller until the next round starts
 * shares one promise (64 callers: one allocation, one resolution). A round starts as a microtask,
 * so every append and sync of the current turn joins it without paying an event-loop turn per
 * commit; after MAX_CHAINED_ROUNDS in a row it goes through setImmediate instead, so a log under
 * constant load cannot starve timers and I/O callbacks. At most one round runs at a time; callers
 * arriving while one is in flight (e.g. waiting for a thread-pool fsync) are covered by the next.
 *
 * The scheduler does no I/O: the host's `runRound` does, and reports back with `settle` (release
 * every waiter whose target is reached) or `rejectAll` (a latched failure).
 */
export class CommitScheduler {
  private waiters: Waiter[] = [];
  private flushScheduled = false;
  private started = 0;
  private inFlight: Promise<void> | undefined;
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
    return this.inFlight;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /** Resolves once `reached() >= target`; schedules a round if needed. */
  waitFor(target: number): Promise<void> {
    if (this.host.reached() >= target) return Promise.resolve();
    const last = this.waiters.at(-1);
    if (last !== undefined && last.round === this.started) {
      // The round that will cover `last` has not started: it covers this caller too.
      if (target > last.target) last.target = target;
      return last.promise;
    }
    let resolve!: () => void;
    let reject!: (err: unknown) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.waiters.push({ target, round: this.started, promise, resolve, reject });
    this.requestRound();
    return promise;
  }

  /** Asks for a round (no-op if one is already scheduled; one in flight reschedules when it ends). */
  requestRound(): void {
    if (this.flushScheduled || this.host.closed()) return;
    this.flushScheduled = true;
    if (this.inFlight === undefined) this.schedule();
  }

  /** The round resumed from an I/O callback (a fresh event-loop task): the microtask chain is broken. */
  resumedFromEventLoop(): void {
    this.chainedRounds = 0;
  }

  /** Releases every waiter whose target is reached; asks for another round if any remain. */
  settle(): void {
    if (this.waiters.length === 0) return;
    const reached = this.host.reached();
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      if (w.target <= reached) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
    if (still.length > 0) this.requestRound();
  }

  /** Lowers every target above `limit` (records above it were truncated away). */
  clamp(limit: number): void {
    for (const w of this.waiters) if (w.target > limit) w.target = limit;
  }

  rejectAll(err: unknown): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(err);
  }

  private schedule(): void {
    if (this.chainedRounds < MAX_CHAINED_ROUNDS) {
      this.chainedRounds++;
      queueMicrotask(this.start);
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
    invariant(this.inFlight === undefined, 'group-commit rounds never overlap');
    this.started++;
    const round = this.host.runRound();
    this.inFlight = round;
    void round.finally(() => {
      this.inFlight = undefined;
      // Callers released by the round that just ended have already appended and asked for the
      // next one: their continuations ran before this callback.
      if (this.flushScheduled) this.schedule();
    });
  };
}
