import { openAbFile } from '../io/abFile.ts';
import type { FileSystem } from '../io/fileSystem.ts';
import { CairnError } from '../lib/errors.ts';

/** The devnet's identity, fixed when a data directory is created: the committee derives from it. */
export interface DevnetIdentity {
  version: 1;
  seed: number;
  lanes: number;
}

const IDENTITY_FILE = 'devnet';

/**
 * Loads the identity stored in `dataDir`, or stores `requested` on a fresh directory. A directory
 * created with another committee cannot be reused with different flags: its WALs belong to those
 * lanes. Kept in an A/B file, so a crash while creating it leaves a directory that opens as fresh.
 */
export function loadOrCreateIdentity(
  fs: FileSystem,
  dataDir: string,
  requested: { seed: number; lanes: number; lanesExplicit: boolean },
): { identity: DevnetIdentity; created: boolean } {
  const { file, loaded } = openAbFile(fs, dataDir, IDENTITY_FILE);
  try {
    if (loaded.payload !== undefined) {
      const identity = parseIdentity(loaded.payload, dataDir);
      if (requested.lanesExplicit && identity.lanes !== requested.lanes) {
        throw new CairnError(
          'INVALID_ARGUMENT',
          `${dataDir} holds a devnet with ${identity.lanes} lanes; run it with --lanes ${identity.lanes} ` +
            'or choose another --data-dir',
        );
      }
      return { identity, created: false };
    }
    const identity: DevnetIdentity = { version: 1, seed: requested.seed, lanes: requested.lanes };
    file.write(new TextEncoder().encode(JSON.stringify(identity)));
    return { identity, created: true };
  } finally {
    file.close();
  }
}

function parseIdentity(payload: Uint8Array, dataDir: string): DevnetIdentity {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(payload));
  } catch (err) {
    throw new CairnError('DECODE', `devnet identity in ${dataDir} is not valid JSON`, { cause: err });
  }
  const p = parsed as Partial<DevnetIdentity>;
  if (p.version !== 1 || !Number.isSafeInteger(p.seed) || !Number.isSafeInteger(p.lanes) || p.lanes! < 1) {
    throw new CairnError('DECODE', `devnet identity in ${dataDir} is malformed: ${JSON.stringify(parsed)}`);
  }
  return p as DevnetIdentity;
}
