/**
 * Re-raises `thrown` in a microtask of its own. For callbacks supplied by a caller that must not
 * throw (listeners, fsync waiters, `onFatal`): one that does broke its own contract, not the
 * component's, so its throw must not reach the code that called it (it would latch the component,
 * stop a loop that releases other waiters, or reject a shutdown that still has files to close). In
 * its own microtask it surfaces as an uncaught exception: reported, not swallowed.
 */
export function reraiseApart(thrown: unknown): void {
  queueMicrotask(() => {
    throw thrown;
  });
}
