import { InvalidArgumentError } from '../../src/errors';
import {
  familiarString,
  formatReference,
  normalizeReference,
  parseDockerRef,
  parseNormalizedReference,
} from '../../src/provisioner/store/reference';

const H = 'a'.repeat(64);
const D = `sha256:${H}`;

describe('image references', () => {
  test.each([
    ['busybox', 'docker.io/library/busybox:latest'],
    ['busybox:1.36', 'docker.io/library/busybox:1.36'],
    ['library/busybox', 'docker.io/library/busybox:latest'],
    ['docker.io/busybox', 'docker.io/library/busybox:latest'],
    ['docker.io/library/busybox:1', 'docker.io/library/busybox:1'],
    ['index.docker.io/busybox', 'docker.io/library/busybox:latest'],
    ['index.docker.io/someone/app:v2', 'docker.io/someone/app:v2'],
    ['someone/app', 'docker.io/someone/app:latest'],
    ['someone/team/app:1.0', 'docker.io/someone/team/app:1.0'],
    ['localhost/x', 'localhost/x:latest'],
    ['localhost:5000/x', 'localhost:5000/x:latest'],
    ['localhost:5000/x/y:tag', 'localhost:5000/x/y:tag'],
    ['127.0.0.1:5000/pause:3.9', '127.0.0.1:5000/pause:3.9'],
    ['registry.k8s.io/pause:3.9', 'registry.k8s.io/pause:3.9'],
    ['gcr.io/k8s-staging-cri-tools/test-image-1', 'gcr.io/k8s-staging-cri-tools/test-image-1:latest'],
    ['registry.k8s.io/e2e-test-images/busybox:1.29-2', 'registry.k8s.io/e2e-test-images/busybox:1.29-2'],
    [`busybox@${D}`, `docker.io/library/busybox@${D}`],
    [`host:5000/a/b:tag@${D}`, `host:5000/a/b@${D}`],
    [`busybox:1.36@${D}`, `docker.io/library/busybox@${D}`],
    ['[::1]:5000/x:y', '[::1]:5000/x:y'],
    ['Foo.example.com/bar', 'Foo.example.com/bar:latest'],
    ['a_b/c__d/e-f/g--h/i.j:T_A-G.1', 'docker.io/a_b/c__d/e-f/g--h/i.j:T_A-G.1'],
    ['localhost:5000', 'docker.io/library/localhost:5000'],
    ['x:' + 'T'.repeat(128), 'docker.io/library/x:' + 'T'.repeat(128)],
  ])('%s → %s', (input, want) => {
    expect(normalizeReference(input)).toBe(want);
  });

  test('parseNormalizedReference keeps tag and digest; parseDockerRef drops the tag', () => {
    expect(parseNormalizedReference(`host:5000/a/b:tag@${D}`)).toEqual({
      domain: 'host:5000',
      path: 'a/b',
      tag: 'tag',
      digest: D,
    });
    expect(parseNormalizedReference('busybox')).toEqual({ domain: 'docker.io', path: 'library/busybox' });
    expect(parseDockerRef(`host:5000/a/b:tag@${D}`)).toEqual({ domain: 'host:5000', path: 'a/b', digest: D });
  });

  test.each([
    [''],
    ['Busybox'],
    ['docker.io/Library/busybox'],
    ['localhost:5000/UPPER'],
    ['busybox:'],
    [':tag'],
    ['busybox:-tag'],
    ['busybox:.tag'],
    ['x:' + 'T'.repeat(129)],
    ['busybox:tag:tag2'],
    ['busybox@sha256:abc'],
    [`busybox@sha256:${'A'.repeat(64)}`],
    [`busybox@md5:${'a'.repeat(32)}`],
    [`busybox@sha256:${'a'.repeat(63)}`],
    ['-busybox'],
    ['busybox-'],
    ['a___b'],
    ['a.-b'],
    ['a/'],
    ['/a'],
    ['a//b'],
    ['http://busybox'],
    ['busy box'],
    [H],
    ['docker.io/' + 'a'.repeat(250)],
    ['@' + D],
  ])('invalid: %j', (input) => {
    let err: unknown;
    try {
      parseDockerRef(input);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidArgumentError);
    const e = err as InvalidArgumentError;
    expect(e.kind).toBe('InvalidArgument');
    expect(e.context.field).toBe('image');
    expect(e.message).toContain(`invalid reference "${input}"`);
  });

  test.each([
    ['docker.io/library/busybox:latest', 'busybox:latest'],
    ['docker.io/someone/app:1', 'someone/app:1'],
    ['docker.io/library/a/b:1', 'library/a/b:1'],
    ['localhost:5000/x:y', 'localhost:5000/x:y'],
    [`docker.io/library/busybox@${D}`, `busybox@${D}`],
  ])('familiar form of %s is %s', (input, want) => {
    expect(familiarString(parseNormalizedReference(input))).toBe(want);
  });

  test('formatReference round-trips normalized references', () => {
    for (const s of ['docker.io/library/busybox:latest', `quay.io/a/b@${D}`, 'localhost:5000/x:y']) {
      expect(formatReference(parseNormalizedReference(s))).toBe(s);
    }
  });
});
