/**
 * Runs `body` with the process's uncaughtException listeners (the test runner's among them)
 * replaced by one that records what was thrown; restores them afterwards. For callbacks whose throw
 * must be re-raised apart (src/lib/reraise.ts) rather than swallowed or latched.
 */
export async function catchingUncaught(body: (thrown: unknown[]) => Promise<void>): Promise<void> {
  const saved = process.listeners('uncaughtException');
  process.removeAllListeners('uncaughtException');
  const thrown: unknown[] = [];
  const record = (err: unknown) => thrown.push(err);
  process.on('uncaughtException', record);
  try {
    await body(thrown);
  } finally {
    process.removeListener('uncaughtException', record);
    for (const l of saved) process.on('uncaughtException', l);
  }
}
