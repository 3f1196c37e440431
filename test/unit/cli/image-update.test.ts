/**
 * `pir image update`'s JSON patch: --remove-property skips what the image does not have, as
 * glanceclient's image-update does, so the rest of the update still applies.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { absentRemovals, buildPatch, type UpdateOptions } from '../../../cli/image-commands.js';

const options = (o: Partial<UpdateOptions>): UpdateOptions => ({ property: [], removeProperty: [], ...o });

describe('pir image update', () => {
  const image = { id: 'i', name: 'old-name', protected: false, os_distro: 'ubuntu', kept: 'x' };

  it("README's example on an image without 'old': the rest applies, 'old' is said to be absent", () => {
    const o = options({ name: 'new', property: ['os_distro=debian'], removeProperty: ['old'], protected: true });
    assert.deepEqual(buildPatch(image, o), [
      { op: 'replace', path: '/name', value: 'new' },
      { op: 'replace', path: '/os_distro', value: 'debian' },
      { op: 'replace', path: '/protected', value: true },
    ]);
    assert.deepEqual(absentRemovals(image, o), ['old']);
  });

  it('removes what the image has, once, and not what --property sets (glanceclient: the set wins)', () => {
    const o = options({ property: ['kept=y', 'fresh=1'], removeProperty: ['os_distro', 'os_distro', 'kept', 'fresh', 'a/b'] });
    assert.deepEqual(buildPatch({ ...image, 'a/b': 1 }, o), [
      { op: 'replace', path: '/kept', value: 'y' },
      { op: 'add', path: '/fresh', value: '1' },
      { op: 'remove', path: '/os_distro' },
      { op: 'remove', path: '/a~1b' },
    ]);
    assert.deepEqual(absentRemovals(image, o), ['a/b']);
  });

  it('only absent properties to remove: no change to send', () => {
    assert.deepEqual(buildPatch(image, options({ removeProperty: ['old'] })), []);
  });
});
