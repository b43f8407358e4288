/**
 * Entry of the archive writer thread (started by archiveWriterThread.ts): runs the requests of its
 * parent in arrival order on one ParquetWindowWriter and answers each `write` with its row counts or
 * the engine's error message. A failed `stage` of acknowledged blocks is remembered and reported
 * with the next `write` (which asks for the window's entries); a `stage` with an id (a piece of a
 * window sent from the WAL) is answered when done, or with its failure.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { describe } from '../lib/errors.ts';
import type { WriterReply, WriterRequest } from './archiveWriterThread.ts';
import { ParquetWindowWriter, type ParquetWriterOptions } from './parquetWindowWriter.ts';

const port = parentPort;
if (port === null) throw new Error('archiveWriterWorker.ts must run in a worker thread');

const writer = ParquetWindowWriter.open(workerData as ParquetWriterOptions);
// An engine that fails to start answers every write with that failure (no unhandled rejection).
writer.catch(() => undefined);
let stageError: string | undefined;
let chain: Promise<void> = Promise.resolve();

function unpack(packed: Uint8Array, ends: Uint32Array): Uint8Array[] {
  const out: Uint8Array[] = new Array(ends.length);
  let start = 0;
  for (let i = 0; i < ends.length; i++) {
    out[i] = packed.subarray(start, ends[i]);
    start = ends[i]!;
  }
  return out;
}

async function handle(m: WriterRequest): Promise<void> {
  if (m.type === 'stage') {
    try {
      await (await writer).stage(m.first, unpack(m.packed, m.ends));
      if (m.id !== undefined) port!.postMessage({ id: m.id, ok: true, staged: true } satisfies WriterReply);
    } catch (err) {
      // A piece of a window sent from the WAL is answered at once (its write is not sent).
      if (m.id !== undefined)
        port!.postMessage({ id: m.id, ok: false, message: describe(err) } satisfies WriterReply);
      else stageError ??= describe(err);
    }
    return;
  }
  if (m.type === 'close') {
    try {
      (await writer).close();
    } catch {
      // Closing an engine that failed to start: nothing to release.
    }
    port!.close();
    return;
  }
  let reply: WriterReply;
  try {
    const entries = m.packed && m.ends ? unpack(m.packed, m.ends) : undefined;
    const w = await writer;
    if (entries === undefined && !w.covers(m.first, m.last)) {
      const why = stageError === undefined ? 'not staged' : `an earlier staging failed: ${stageError}`;
      stageError = undefined;
      port!.postMessage({ id: m.id, ok: false, needsEntries: true, message: why } satisfies WriterReply);
      return;
    }
    const rows = await w.write(m.first, m.last, entries, m.receiptsPath, m.logsPath);
    reply = { id: m.id, ok: true, ...rows };
  } catch (err) {
    const earlier = stageError === undefined ? '' : ` (an earlier staging failed: ${stageError})`;
    reply = { id: m.id, ok: false, message: `${describe(err)}${earlier}` };
  }
  stageError = undefined;
  port!.postMessage(reply);
}

port.on('message', (m: WriterRequest) => {
  chain = chain.then(() => handle(m));
});
