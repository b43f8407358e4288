/**
 * Child process for the directory-lock tests: `lockHolderChild.ts <dir> hold|try`.
 * Reports `{ type: 'locked', pid }` or `{ type: 'error', code, message }` over IPC; with `hold` it
 * then keeps the lock until killed, with `try` it exits.
 */
import { acquireDirLock } from '../../src/io/dirLock.ts';
import { isCairnError } from '../../src/lib/errors.ts';

const [dir, mode] = process.argv.slice(2);
if (dir === undefined || (mode !== 'hold' && mode !== 'try')) {
  console.error('usage: lockHolderChild.ts <dir> hold|try');
  process.exit(2);
}
try {
  await acquireDirLock(dir);
  process.send?.({ type: 'locked', pid: process.pid });
  if (mode === 'hold') setInterval(() => {}, 1 << 30);
  else process.disconnect?.();
} catch (err) {
  process.send?.({ type: 'error', code: isCairnError(err) ? err.code : 'UNKNOWN', message: String(err) });
  process.disconnect?.();
}
