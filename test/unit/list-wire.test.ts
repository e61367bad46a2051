// ListContainers answered in wire bytes (src/cri/services/containers.ts):
// the answer put together from each container's encoded message decodes to
// the same response the generated encoder makes, whatever the messages' sizes.
import { Container, ListContainersResponse } from '../../src/gen/runtime/v1/api';
import { WIRE_BYTES, encodeListing, listContainersWire } from '../../src/cri/services/containers';

function container(i: number, labelBytes: number): Container {
  return Container.fromPartial({
    id: `c${i}`,
    podSandboxId: `p${i}`,
    metadata: { name: `n${i}`, attempt: i },
    image: { image: 'registry.example.test/busybox:1' },
    imageRef: 'sha256:ab',
    state: i % 4,
    createdAt: BigInt(i) * 1_000_000_007n,
    labels: labelBytes ? { big: 'x'.repeat(labelBytes) } : {},
    annotations: { a: String(i) },
  });
}

test('messages of 1-, 2- and 3-byte lengths, and none at all', () => {
  const cs = [container(0, 0), container(1, 200), container(2, 40_000), container(3, 5)];
  const wire = encodeListing(cs.map((c) => Container.encode(c).finish()));
  expect(Buffer.compare(wire, Buffer.from(ListContainersResponse.encode({ containers: cs }).finish()))).toBe(0);
  expect(ListContainersResponse.decode(wire).containers).toEqual(cs);
  expect(encodeListing([])).toHaveLength(0);
});

test('the serializer sends the bytes as they are, else encodes the message', () => {
  const cs = [container(7, 10)];
  const bytes = encodeListing(cs.map((c) => Container.encode(c).finish()));
  expect(listContainersWire({ containers: [], [WIRE_BYTES]: bytes })).toEqual(bytes);
  expect(ListContainersResponse.decode(listContainersWire({ containers: cs })).containers).toEqual(cs);
});
