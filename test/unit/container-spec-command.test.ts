import { resolveCommand } from '../../src/cri/container-spec/command';
import type { ImageConfigInput } from '../../src/cri/container-spec/types';
import { fieldOf } from '../helpers/invalid';

const image = (Entrypoint?: unknown, Cmd?: unknown): ImageConfigInput => ({ config: { Entrypoint, Cmd } });

describe('resolveCommand: CRI command/args against the image Entrypoint/Cmd', () => {
  const cases: [string, string[], string[], ImageConfigInput, string[]][] = [
    ['neither: Entrypoint + Cmd', [], [], image(['/ep'], ['c1', 'c2']), ['/ep', 'c1', 'c2']],
    ['neither, Cmd only', [], [], image(null, ['/bin/sh', '-c', 'x']), ['/bin/sh', '-c', 'x']],
    ['neither, Entrypoint only', [], [], image(['/ep', '-v'], null), ['/ep', '-v']],
    ['only args: Entrypoint + args (image Cmd dropped)', [], ['a1'], image(['/ep'], ['c1']), ['/ep', 'a1']],
    ['only args, no Entrypoint: args alone', [], ['/bin/true', 'x'], image(undefined, ['c1']), ['/bin/true', 'x']],
    ['command: command alone (no Cmd, no Entrypoint)', ['/cmd'], [], image(['/ep'], ['c1']), ['/cmd']],
    ['command + args', ['/cmd', '-x'], ['a1', 'a2'], image(['/ep'], ['c1']), ['/cmd', '-x', 'a1', 'a2']],
    ['no image config at all', ['/cmd'], [], {}, ['/cmd']],
    ['image config null', [], ['/x'], { config: null }, ['/x']],
  ];
  test.each(cases)('%s', (_name, command, args, img, want) => {
    expect(resolveCommand({ command, args }, img)).toEqual(want);
  });

  const errors: [string, string[], string[], ImageConfigInput, string][] = [
    ['nothing anywhere', [], [], image(null, null), 'config.command'],
    ['empty image lists', [], [], image([], []), 'config.command'],
    ['empty program from command', [''], [], image(), 'config.command[0]'],
    ['empty program from args', [], [''], image(), 'config.args[0]'],
    ['empty program from the image', [], [], image([''], []), 'config.command'],
    ['NUL in command', ['/bin/sh\0x'], [], image(), 'config.command[0]'],
    ['NUL in args', ['/x'], ['ok', 'b\0ad'], image(), 'config.args[1]'],
    ['over-long arg', ['/x'], ['a'.repeat(131072)], image(), 'config.args[0]'],
    ['image Entrypoint not a list', [], [], image('/bin/sh', null), 'config.image'],
    ['image Cmd with a number', [], [], image(null, ['/x', 1]), 'config.image'],
    ['NUL in the image Cmd', [], [], image(null, ['/x\0']), 'config.image'],
  ];
  test.each(errors)('error: %s', (_name, command, args, img, field) => {
    expect(fieldOf(() => resolveCommand({ command, args }, img))).toBe(field);
  });

  test('the image Cmd is not validated when args replace it', () => {
    expect(resolveCommand({ command: [], args: ['/x'] }, image(null, ['bad\0']))).toEqual(['/x']);
  });
});
