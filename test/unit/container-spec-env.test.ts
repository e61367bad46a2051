import { buildEnv, DEFAULT_PATH, type EnvInput } from '../../src/cri/container-spec/env';
import { fieldOf } from '../helpers/invalid';

const base: EnvInput = { envs: [], imageEnv: undefined, hostname: 'pod-a', home: '/root', tty: false };
const kv = (key: string, value: string | Uint8Array): { key: string; value: string | Uint8Array } => ({ key, value });

describe('buildEnv', () => {
  const cases: [string, Partial<EnvInput>, string[]][] = [
    ['defaults only', {}, [`PATH=${DEFAULT_PATH}`, 'HOSTNAME=pod-a', 'HOME=/root']],
    [
      'image env kept in order, PATH from the image',
      { imageEnv: ['A=1', 'PATH=/bin', 'B=2'] },
      ['A=1', 'PATH=/bin', 'B=2', 'HOSTNAME=pod-a', 'HOME=/root'],
    ],
    [
      'CRI wins by key, in place; new CRI keys appended in order',
      { imageEnv: ['PATH=/bin', 'A=1', 'B=2'], envs: [kv('B', 'cri'), kv('C', '3'), kv('A', Buffer.from('x'))] },
      ['PATH=/bin', 'A=x', 'B=cri', 'HOSTNAME=pod-a', 'C=3', 'HOME=/root'],
    ],
    [
      'duplicates collapsed (last value, first position)',
      { imageEnv: ['PATH=/a', 'X=1', 'X=2'], envs: [kv('Y', '1'), kv('Y', '2')] },
      ['PATH=/a', 'X=2', 'HOSTNAME=pod-a', 'Y=2', 'HOME=/root'],
    ],
    ['PATH from CRI only: no default', { envs: [kv('PATH', '/opt')] }, ['HOSTNAME=pod-a', 'PATH=/opt', 'HOME=/root']],
    [
      'HOSTNAME overrides the image, a CRI env overrides HOSTNAME',
      { imageEnv: ['PATH=/p', 'HOSTNAME=img'], envs: [kv('HOSTNAME', 'mine')] },
      ['PATH=/p', 'HOSTNAME=mine', 'HOME=/root'],
    ],
    ['HOME kept when set', { imageEnv: ['PATH=/p', 'HOME=/home/x'] }, ['PATH=/p', 'HOME=/home/x', 'HOSTNAME=pod-a']],
    ['tty adds TERM', { imageEnv: ['PATH=/p'], tty: true }, ['PATH=/p', 'HOSTNAME=pod-a', 'HOME=/root', 'TERM=xterm']],
    [
      'tty keeps a TERM',
      { imageEnv: ['PATH=/p', 'TERM=vt100'], tty: true },
      ['PATH=/p', 'TERM=vt100', 'HOSTNAME=pod-a', 'HOME=/root'],
    ],
    [
      'image entries without "=" or with an empty key are skipped; "=" in values kept',
      { imageEnv: ['PATH=/p', 'JUSTKEY', '=v', 'E=a=b', 'EMPTY='] },
      ['PATH=/p', 'E=a=b', 'EMPTY=', 'HOSTNAME=pod-a', 'HOME=/root'],
    ],
    ['null image env', { imageEnv: null, envs: [kv('PATH', '/x')] }, ['HOSTNAME=pod-a', 'PATH=/x', 'HOME=/root']],
  ];
  test.each(cases)('%s', (_name, over, want) => {
    expect(buildEnv({ ...base, ...over })).toEqual(want);
  });

  const errors: [string, Partial<EnvInput>, string][] = [
    ['empty key', { envs: [kv('A', '1'), kv('', 'x')] }, 'config.envs[1].key'],
    ['"=" in key', { envs: [kv('A=B', 'x')] }, 'config.envs[0].key'],
    ['NUL in value', { envs: [kv('A', 'x\0y')] }, 'config.envs[0]'],
    ['NUL in key', { envs: [kv('A\0', 'x')] }, 'config.envs[0]'],
    ['invalid UTF-8 value', { envs: [kv('A', Buffer.from([0x66, 0xff, 0xfe]))] }, 'config.envs[0].value'],
    ['over-long value', { envs: [kv('A', 'x'.repeat(200000))] }, 'config.envs[0]'],
    ['image Env not a list', { imageEnv: 'PATH=/x' }, 'config.image'],
    ['NUL in the image Env', { imageEnv: ['A=\0'] }, 'config.image'],
  ];
  test.each(errors)('error: %s', (_name, over, field) => {
    expect(fieldOf(() => buildEnv({ ...base, ...over }))).toBe(field);
  });
});
