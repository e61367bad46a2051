// The process argv, by the rules kubelet and containerd follow:
//   command set      → command + args (the image's Cmd is NOT used, even when args is empty)
//   only args set    → image Entrypoint + args
//   neither          → image Entrypoint + image Cmd
// An empty result (or an empty program name) is an error.

import { InvalidArgumentError } from '../../errors';
import type { ImageConfigInput } from './types';
import { checkArg, IMAGE_FIELD, imageStringList } from './values';

export interface CommandInput {
  command: readonly string[];
  args: readonly string[];
}

export function resolveCommand(config: CommandInput, image: ImageConfigInput): string[] {
  const command = config.command.map((c, i) => checkArg(c, `config.command[${i}]`));
  const args = config.args.map((a, i) => checkArg(a, `config.args[${i}]`));
  let argv: string[];
  if (command.length > 0) {
    argv = [...command, ...args];
  } else {
    const entrypoint = imageStringList(image.config?.Entrypoint, 'Entrypoint') ?? [];
    const cmd = args.length > 0 ? args : (imageStringList(image.config?.Cmd, 'Cmd') ?? []);
    entrypoint.forEach((e, i) => checkArg(e, IMAGE_FIELD, `the image's Entrypoint[${i}]`));
    if (args.length === 0) cmd.forEach((c, i) => checkArg(c, IMAGE_FIELD, `the image's Cmd[${i}]`));
    argv = [...entrypoint, ...cmd];
  }
  if (argv.length === 0) throw new InvalidArgumentError('config.command', 'no command specified');
  if (argv[0] === '') {
    const field = command.length > 0 ? 'config.command[0]' : args.length > 0 ? 'config.args[0]' : 'config.command';
    throw new InvalidArgumentError(field, 'the program name is empty');
  }
  return argv;
}
