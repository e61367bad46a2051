// RuntimeService's streaming RPCs: Exec, Attach and PortForward check the
// request (and that its container or pod is there and running), then hand
// back a one-time URL of the streaming server (src/streaming).
import { checkExecCmd } from '../container-mapping';
import { InvalidArgumentError } from '../../errors';
import type {
  AttachRequest,
  AttachResponse,
  ExecRequest,
  ExecResponse,
  PortForwardRequest,
  PortForwardResponse,
  RuntimeServiceServer,
} from '../../gen/runtime/v1/api';
import type { StreamingServer } from '../../streaming/server';
import { StreamRuntime, validateStreamRequest } from '../../streaming/runtime';
import type { ServiceHandlers } from './handler';

export interface StreamingServiceDeps {
  server: StreamingServer;
  runtime: StreamRuntime;
}

export function streamingHandlers(deps: StreamingServiceDeps): ServiceHandlers<RuntimeServiceServer> {
  const { server, runtime } = deps;

  const exec = async (req: ExecRequest): Promise<ExecResponse> => {
    validateStreamRequest(req);
    checkExecCmd(req.cmd);
    const opts = { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, tty: req.tty };
    const run = runtime.prepareExec(req.containerId, req.cmd, opts);
    return { url: server.register({ kind: 'exec', options: opts, run }) };
  };

  const attach = async (req: AttachRequest): Promise<AttachResponse> => {
    validateStreamRequest(req);
    const opts = { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, tty: req.tty };
    const run = await runtime.prepareAttach(req.containerId, opts);
    return { url: server.register({ kind: 'attach', options: opts, run }) };
  };

  const portForward = async (req: PortForwardRequest): Promise<PortForwardResponse> => {
    if (req.podSandboxId === '') throw new InvalidArgumentError('pod_sandbox_id', 'is required');
    for (const p of req.port) {
      if (!(p > 0 && p < 65536)) throw new InvalidArgumentError('port', `${p} is not a port`);
    }
    const dial = runtime.preparePortForward(req.podSandboxId);
    return { url: server.register({ kind: 'portforward', ports: [...req.port], dial }) };
  };

  return {
    exec: exec,
    attach: attach,
    portForward: portForward,
  };
}
