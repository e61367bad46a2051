import { InvalidArgumentError } from '../../src/errors';
import { pluginConfig, pluginEnv } from '../../src/network/cni/invoke';
import { parseQuantity } from '../../src/network/cni/quantity';
import {
  capabilityArgs,
  cniArgs,
  runtimeConfigFor,
  toCniBandwidth,
  toCniPortMappings,
} from '../../src/network/cni/runtime-config';

describe('k8s quantities', () => {
  test.each([
    ['10M', 10_000_000n],
    ['1k', 1000n],
    ['1Ki', 1024n],
    ['1.5Gi', 1610612736n],
    ['100', 100n],
    ['1e3', 1000n],
    ['1E6', 1000000n],
    ['2.5e-1', 1n],
    ['500m', 1n],
    ['1500m', 2n],
    ['1P', 1000000000000000n],
    ['0.5k', 500n],
    ['.5M', 500000n],
    ['+3', 3n],
    ['-1.5', -1n],
    ['1Ei', 1n << 60n],
    ['12n', 1n],
  ])('%s = %s', (s, v) => expect(parseQuantity(s)).toBe(v));

  test.each(['', 'M', '10 M', '10MB', '1.2.3', 'abc', '10mi', ' 1', '1e'])('rejects %j', (s) => {
    expect(() => parseQuantity(s)).toThrow();
  });
});

describe('CNI runtime config', () => {
  test('CNI_ARGS as kubelet runtimes send it', () => {
    expect(cniArgs({ sandboxId: 'abc123', name: 'web-0', namespace: 'default', uid: '7d5f-11' })).toBe(
      'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=7d5f-11',
    );
    expect(() => cniArgs({ sandboxId: 'a', name: 'x;y', namespace: 'n', uid: 'u' })).toThrow(InvalidArgumentError);
    expect(() => cniArgs({ sandboxId: 'a', name: 'x', namespace: 'n=1', uid: 'u' })).toThrow(/metadata.namespace/);
  });

  test('port mappings: only those with a host port; protocol lowercase; hostIP when set', () => {
    expect(
      toCniPortMappings([
        { protocol: 0, containerPort: 80, hostPort: 8080, hostIp: '' },
        { protocol: 1, containerPort: 53, hostPort: 5353, hostIp: '127.0.0.1' },
        { protocol: 2, containerPort: 9, hostPort: 0, hostIp: '' },
        { protocol: 'SCTP', containerPort: 7, hostPort: 7007 },
        { containerPort: 443 },
      ]),
    ).toEqual([
      { hostPort: 8080, containerPort: 80, protocol: 'tcp' },
      { hostPort: 5353, containerPort: 53, protocol: 'udp', hostIP: '127.0.0.1' },
      { hostPort: 7007, containerPort: 7, protocol: 'sctp' },
    ]);
    expect(() => toCniPortMappings([{ protocol: 7, containerPort: 1, hostPort: 2 }])).toThrow(/unknown protocol/);
    expect(() => toCniPortMappings([{ containerPort: 0, hostPort: 2 }])).toThrow(/container_port/);
    expect(() => toCniPortMappings([{ containerPort: 1, hostPort: 70000 }])).toThrow(/host_port/);
  });

  test('bandwidth from the annotations, in bit/s, with the 4 Gbit bucket', () => {
    expect(toCniBandwidth(undefined)).toBeUndefined();
    expect(toCniBandwidth({ other: 'x' })).toBeUndefined();
    expect(toCniBandwidth({ 'kubernetes.io/ingress-bandwidth': '10M' })).toEqual({
      ingressRate: 10_000_000,
      ingressBurst: 4294967295,
    });
    expect(
      toCniBandwidth({ 'kubernetes.io/ingress-bandwidth': '1Mi', 'kubernetes.io/egress-bandwidth': '2.5M' }),
    ).toEqual({ ingressRate: 1048576, ingressBurst: 4294967295, egressRate: 2_500_000, egressBurst: 4294967295 });
    expect(() => toCniBandwidth({ 'kubernetes.io/egress-bandwidth': '999' })).toThrow(/unreasonably small/);
    expect(() => toCniBandwidth({ 'kubernetes.io/egress-bandwidth': '2P' })).toThrow(/unreasonably large/);
    expect(() => toCniBandwidth({ 'kubernetes.io/ingress-bandwidth': 'fast' })).toThrow(
      /annotations\[kubernetes.io\/ingress-bandwidth\]/,
    );
  });

  test('capability args hold only what the pod has', () => {
    expect(capabilityArgs([], {})).toEqual({});
    expect(capabilityArgs([{ containerPort: 80 }], undefined)).toEqual({});
    expect(capabilityArgs([{ containerPort: 80, hostPort: 8080 }], { 'kubernetes.io/egress-bandwidth': '1M' })).toEqual(
      {
        portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }],
        bandwidth: { egressRate: 1_000_000, egressBurst: 4294967295 },
      },
    );
  });

  test('runtimeConfig carries only the capabilities a plugin declares', () => {
    const caps = {
      portMappings: [{ hostPort: 1, containerPort: 2, protocol: 'tcp' }],
      bandwidth: { ingressRate: 1000, ingressBurst: 5 },
    };
    expect(runtimeConfigFor(undefined, caps)).toBeUndefined();
    expect(runtimeConfigFor({ portMappings: true }, caps)).toEqual({ portMappings: caps.portMappings });
    expect(runtimeConfigFor({ portMappings: false, bandwidth: true }, caps)).toEqual({ bandwidth: caps.bandwidth });
    expect(runtimeConfigFor({ dns: true }, caps)).toBeUndefined();
  });

  test('each plugin gets the list name and version, prevResult, and its runtimeConfig', () => {
    const list = {
      name: 'net',
      cniVersion: '1.0.0',
      disableCheck: false,
      plugins: [
        { type: 'bridge', bridge: 'br0', name: 'ignored', cniVersion: '0.1.0' },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    };
    const caps = { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] };
    expect(pluginConfig(list, list.plugins[0], undefined, caps)).toEqual({
      type: 'bridge',
      bridge: 'br0',
      name: 'net',
      cniVersion: '1.0.0',
    });
    const prev = { cniVersion: '1.0.0', ips: [] };
    expect(pluginConfig(list, list.plugins[1], prev, caps)).toEqual({
      type: 'portmap',
      capabilities: { portMappings: true },
      name: 'net',
      cniVersion: '1.0.0',
      prevResult: prev,
      runtimeConfig: { portMappings: caps.portMappings },
    });
    expect(pluginConfig(list, list.plugins[1], prev, {})).not.toHaveProperty('runtimeConfig');
  });

  test('plugin environment', () => {
    const saved = process.env.CNI_NETNS;
    process.env.CNI_NETNS = '/leaked';
    try {
      const env = pluginEnv('DEL', {
        containerId: 'c1',
        netns: '',
        ifName: 'eth0',
        args: 'IgnoreUnknown=1',
        capabilityArgs: {},
        binDirs: ['/opt/cni/bin', '/usr/lib/cni'],
      });
      expect(env).toMatchObject({
        CNI_COMMAND: 'DEL',
        CNI_CONTAINERID: 'c1',
        CNI_NETNS: '',
        CNI_IFNAME: 'eth0',
        CNI_ARGS: 'IgnoreUnknown=1',
        CNI_PATH: '/opt/cni/bin:/usr/lib/cni',
      });
      expect(env.PATH).toMatch(/\/usr\/sbin/);
    } finally {
      if (saved === undefined) delete process.env.CNI_NETNS;
      else process.env.CNI_NETNS = saved;
    }
  });
});
