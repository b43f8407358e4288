// The one tree removal every layer uses (src/io/removeTree.ts): the strict form stops at the first
// failure and reports it; the best-effort form (scratch) swallows failures and still removes what it
// can, so a failed unlink deep in one subtree does not keep its siblings on disk.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { removeTree, removeTreeBestEffort } from '../../src/io/removeTree.ts';
import { errnoCode } from '../../src/lib/errors.ts';
import { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';

const bytes = (s: string) => new TextEncoder().encode(s);

/** /t/a/x, /t/a/y, /t/b/z and a lone file /f. */
function tree(): SimulatedFileSystem {
  const fs = new SimulatedFileSystem({ seed: 1 });
  for (const p of ['/t/a/x', '/t/a/y', '/t/b/z', '/f']) fs.writeFileBytes(p, bytes(p));
  return fs;
}

test('removeTree: removes a directory tree or a single file; an absent target is fine', () => {
  const fs = tree();
  removeTree(fs, '/t');
  removeTree(fs, '/f');
  removeTree(fs, '/missing');
  assert.deepEqual(fs.listFiles('/'), []);
  assert.equal(fs.exists('/t'), false);
});

test('removeTree: the first failure throws the original error and stops the walk', () => {
  const fs = tree();
  const fault = fs.injectFault({ op: 'unlink', nth: 1, error: 'EIO', pathIncludes: '/t/a/' });
  assert.throws(
    () => removeTree(fs, '/t'),
    (err: unknown) => errnoCode(err) === 'EIO',
  );
  assert.equal(fault.firedCount, 1);
  // Nothing after the failed unlink was attempted: /t/b is still there.
  assert.ok(fs.listFiles('/').includes('/t/b/z'), fs.listFiles('/').join(', '));
});

test('removeTreeBestEffort: never throws, and removes everything it can around a failure', () => {
  const fs = tree();
  const fault = fs.injectFault({ op: 'unlink', nth: 1, error: 'EIO', pathIncludes: '/t/a/x' });
  removeTreeBestEffort(fs, '/t');
  assert.equal(fault.firedCount, 1);
  // Only the file that could not be unlinked (and the directories holding it) are left.
  assert.deepEqual(fs.listFiles('/'), ['/f', '/t/a/x']);
  assert.equal(fs.exists('/t/b'), false);
});
