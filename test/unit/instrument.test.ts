import * as grpc from '@grpc/grpc-js';
import {
  AlreadyExistsError,
  CapsaError,
  DeadlineExceededError,
  FailedPreconditionError,
  InternalError,
  InvalidArgumentError,
  NotFoundError,
  UnimplementedError,
  asCapsaError,
} from '../../src/errors';
import { isChatty, requestIds, toStatus } from '../../src/server/instrument';

describe('error → gRPC status', () => {
  test.each([
    [new InvalidArgumentError('config.metadata.name', 'is required'), grpc.status.INVALID_ARGUMENT],
    [new NotFoundError('container "x" not found', { containerId: 'x' }), grpc.status.NOT_FOUND],
    [new AlreadyExistsError('name in use'), grpc.status.ALREADY_EXISTS],
    [new FailedPreconditionError('not running'), grpc.status.FAILED_PRECONDITION],
    [new DeadlineExceededError('stage isolate timed out'), grpc.status.DEADLINE_EXCEEDED],
    [new UnimplementedError('Attach is not implemented'), grpc.status.UNIMPLEMENTED],
    [new InternalError('boom'), grpc.status.INTERNAL],
  ])('%s', (err: CapsaError, code) => {
    expect(toStatus(err).code).toBe(code);
  });

  test('InvalidArgument names the field first', () => {
    expect(toStatus(new InvalidArgumentError('image.image', 'invalid reference "A B"')).details).toBe(
      'image.image: invalid reference "A B"',
    );
  });

  test('context is appended for the operator', () => {
    const s = toStatus(new InternalError('mount failed', { stage: 'isolate', containerId: 'abc' }));
    expect(s.details).toBe('mount failed (stage=isolate, containerId=abc)');
  });

  test('unknown throwables become Internal, keeping the message', () => {
    const e = asCapsaError(new TypeError('x is undefined'), { stage: 'create' });
    expect(e.kind).toBe('Internal');
    expect(e.message).toBe('x is undefined');
    expect(asCapsaError('plain string').message).toBe('plain string');
    const typed = new NotFoundError('n');
    expect(asCapsaError(typed)).toBe(typed);
  });
});

describe('log shaping', () => {
  test.each([
    ['ListContainers', true],
    ['ListPodSandboxStats', true],
    ['Status', true],
    ['ContainerStatus', true],
    ['ImageFsInfo', true],
    ['Version', true],
    ['RunPodSandbox', false],
    ['CreateContainer', false],
    ['StatusX', false],
    ['PullImage', false],
  ])('%s chatty=%s', (m, chatty) => {
    expect(isChatty(m)).toBe(chatty);
  });

  test('ids are picked from any request shape', () => {
    expect(requestIds({ podSandboxId: 'p', containerId: '', image: { image: 'busybox' } })).toEqual({
      podSandboxId: 'p',
      image: 'busybox',
    });
    expect(requestIds({ config: { metadata: { name: 'web' } } })).toEqual({ name: 'web' });
    expect(requestIds(null)).toEqual({});
  });
});
