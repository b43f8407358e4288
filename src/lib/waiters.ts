/**
 * A wake-up flag for one consumer loop: `notify()` sets it, `wait()` resolves once it is set and
 * clears it. A notify that happens while the loop is busy is remembered, so no wake-up is lost,
 * and many notifies collapse into one (targeted wake-ups, no thundering herd).
 */
export class Signal {
  private pending = false;
  private waiter: (() => void) | undefined;
  private listener: ((now: boolean) => void) | undefined;

  /**
   * Callback mode, for a consumer that is a state machine rather than an async loop: from now on
   * every `notify()` calls `listener` synchronously (so it should only schedule work) instead of
   * resolving a `wait()`. A notify remembered before the call is delivered at once.
   */
  listen(listener: (now: boolean) => void): void {
    this.listener = listener;
    if (this.pending) {
      this.pending = false;
      listener(false);
    }
  }

  /**
   * Wakes the consumer. `now` tells a listener that the notifier is at a point where the work may
   * start inside this call (its own state is consistent); listeners may ignore it.
   */
  notify(now = false): void {
    if (this.listener) {
      this.listener(now);
    } else if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w();
    } else {
      this.pending = true;
    }
  }

  wait(): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }
}

/** A promise with its settle functions (Node 20 has no Promise.withResolvers). */
export interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (err: unknown) => void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * Waiters keyed by a threshold, resolved in order when a monotonic cursor passes them. Insertion is
 * O(log n) (binary search) and resolution pops from the front, so thousands of waiters stay cheap.
 */
export class ThresholdWaiters<T> {
  private readonly items: { at: number; d: Deferred<T> }[] = [];

  get size(): number {
    return this.items.length;
  }

  /** A promise resolved by the first `release(cursor, ...)` with `cursor > at`. */
  add(at: number): Promise<T> {
    const d = deferred<T>();
    let lo = 0;
    let hi = this.items.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.items[mid]!.at <= at) lo = mid + 1;
      else hi = mid;
    }
    this.items.splice(lo, 0, { at, d });
    return d.promise;
  }

  /** Resolves every waiter with `at < cursor`, with the value `valueFor(at)`. */
  release(cursor: number, valueFor: (at: number) => T): void {
    let n = 0;
    while (n < this.items.length && this.items[n]!.at < cursor) n++;
    if (n === 0) return;
    for (const { at, d } of this.items.splice(0, n)) d.resolve(valueFor(at));
  }

  rejectAll(err: unknown): void {
    for (const { d } of this.items.splice(0)) d.reject(err);
  }
}

const settled = Promise.resolve();

/**
 * Runs `job` as a microtask, like `queueMicrotask`, but cheaper: Node's `queueMicrotask` wraps
 * every job in an AsyncResource and a bound function (measured: ~0.3 KB per call on the consensus
 * bench, where lanes queue a few per block); a reaction on a settled promise is one small
 * promise. Same queue, same order. `job` must not throw (it would surface as an unhandled rejection).
 */
export function runAsMicrotask(job: () => void): void {
  void settled.then(job);
}
