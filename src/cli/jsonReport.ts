import { CairnError } from '../lib/errors.ts';

/**
 * Output of the inspection commands: one JSON document on stdout, and a non-zero exit code (set, not
 * forced, so pending output still flushes) when the command failed.
 */
export function report(value: unknown, exitCode = 0): void {
  console.log(JSON.stringify(value, null, 2));
  if (exitCode !== 0) process.exitCode = exitCode;
}

/** A failure as JSON: the typed code and details of a CairnError, else the message. */
export function describeError(err: unknown): Record<string, unknown> {
  if (err instanceof CairnError) return { code: err.code, message: err.message, details: err.details };
  return { message: String(err) };
}

/**
 * Opens a store, runs `fn` on it and always closes it. An open or command failure is reported as
 * `{ ok: false, error }` with exit code 1.
 */
export async function withOpenStore<S extends { close(): Promise<void> }>(
  open: () => Promise<S>,
  fn: (store: S) => void | Promise<void>,
): Promise<void> {
  let store: S;
  try {
    store = await open();
  } catch (err) {
    report({ ok: false, error: describeError(err) }, 1);
    return;
  }
  try {
    await fn(store);
  } catch (err) {
    report({ ok: false, error: describeError(err) }, 1);
  } finally {
    await store.close().catch(() => undefined);
  }
}
