/**
 * A decoder of the LZ4 block format (Parquet's LZ4_RAW codec: one block, no frame), written for the
 * interop test so that hyparquet reads the archive's logs files without DuckDB or a native library.
 * A block is a run of sequences: a token (literal count in the high nibble, match length - 4 in the
 * low; 15 means more length bytes follow, each added, until one is not 255), the literals, then a
 * 2-byte little-endian offset back into the output and the match; the last sequence has literals only.
 */
export function lz4RawDecompress(input: Uint8Array, outputLength: number): Uint8Array {
  const out = new Uint8Array(outputLength);
  let i = 0;
  let o = 0;
  const length = (nibble: number): number => {
    let n = nibble;
    if (nibble === 15) {
      let b: number;
      do {
        if (i >= input.length) throw new Error('LZ4 block ends inside a length');
        b = input[i++]!;
        n += b;
      } while (b === 255);
    }
    return n;
  };
  while (i < input.length) {
    const token = input[i++]!;
    const literals = length(token >> 4);
    if (i + literals > input.length || o + literals > outputLength) throw new Error('LZ4 literals overrun');
    out.set(input.subarray(i, i + literals), o);
    i += literals;
    o += literals;
    if (i >= input.length) break;
    if (i + 2 > input.length) throw new Error('LZ4 block ends inside an offset');
    const offset = input[i]! | (input[i + 1]! << 8);
    i += 2;
    const match = length(token & 15) + 4;
    if (offset === 0 || offset > o || o + match > outputLength) throw new Error('LZ4 match out of range');
    // Byte by byte: a match may overlap the bytes it produces (offset < length repeats them).
    for (let k = 0; k < match; k++, o++) out[o] = out[o - offset]!;
  }
  if (o !== outputLength) throw new Error(`LZ4 block decoded to ${o} bytes, expected ${outputLength}`);
  return out;
}
