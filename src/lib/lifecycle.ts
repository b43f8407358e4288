/**
 * Runs every shutdown step in order even when an earlier one fails (a failed close must not leak
 * the resources after it), then throws the first failure.
 */
export async function runAllThenThrowFirst(steps: readonly (() => unknown)[]): Promise<void> {
  let first: { error: unknown } | undefined;
  for (const step of steps) {
    try {
      await step();
    } catch (error) {
      first ??= { error };
    }
  }
  if (first) throw first.error;
}
