/**
 * One background zero-fill slice at a time, process-wide. Pacing each log's spare preparation is not
 * enough when many logs roll over together (40 lanes started together fill their segments at about
 * the same moment): forty "small" slices in flight are megabytes of zeros in front of every lane's
 * fsync. Slices queue here in arrival order (FIFO, so no log starves) and run one after another.
 */
let busy = false;
const queue: Array<() => void> = [];

/** Runs `slice` once every slice queued before it has finished; resolves with its result. */
export async function runZeroFillSlice<T>(slice: () => Promise<T>): Promise<T> {
  if (busy) await new Promise<void>((resolve) => queue.push(resolve));
  busy = true;
  try {
    return await slice();
  } finally {
    const next = queue.shift();
    if (next) next();
    else busy = false;
  }
}
