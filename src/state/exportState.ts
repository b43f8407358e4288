/**
 * Export: streams committed state at one height in the export format (`exportFormat.ts`: header,
 * rows in engine order, trailer with row count, root and CRC32C of the stream). It reads a private
 * view, so commits continue meanwhile.
 */
import { crc32c as crc32cOf } from '../lib/crc32c.ts';
import { encodeExportHeader, encodeExportRow, encodeExportTrailer } from './exportFormat.ts';
import { openView } from './stateView.ts';
import type { StoreCore } from './storeCore.ts';

/**
 * Streams the committed state at `height` (0 = tip) in the export format to `sink`. Returns the
 * row count and root. Reads a private view, so commits may continue meanwhile.
 */
export async function exportState(
  core: StoreCore,
  height: number,
  sink: (chunk: Uint8Array) => void | Promise<void>,
  onProgress?: (p: { rows: number; bytes: number }) => void,
): Promise<{ height: number; rows: number; root: Uint8Array }> {
  const view = await openView(core, height);
  try {
    let crc = 0;
    let bytes = 0;
    const emit = async (chunk: Uint8Array) => {
      crc = crc32cOf(chunk, crc);
      bytes += chunk.length;
      await sink(chunk);
    };
    await emit(encodeExportHeader(view.version));
    let rows = 0;
    for await (const { key, value } of view.rows()) {
      await emit(encodeExportRow(key, value));
      if (++rows % 50_000 === 0) onProgress?.({ rows, bytes });
    }
    const root = view.committedRoot();
    await sink(encodeExportTrailer(rows, root, crc));
    onProgress?.({ rows, bytes });
    return { height: view.version, rows, root };
  } finally {
    await view.close();
  }
}
