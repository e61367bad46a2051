// The layers of src/ (docs/architecture.md), checked on every `make test`:
//
//   cli ─▶ server ─▶ cri ─▶ containerizer (through index.ts), provisioner, network, streaming ─▶ util, errors, log
//
// A rule here is a fact about the code today; tighten it as the code moves,
// never loosen it to let a change through.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'Import cycles (type-only ones too) make the layers meaningless and the load order fragile.',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'server-is-the-top',
      severity: 'error',
      comment: 'Only the command line starts the server; nothing below it reaches back up.',
      from: { path: '^src/', pathNot: ['^src/server/', '^src/cli[.]ts$', '^src/cli/'] },
      to: { path: '^src/server/' },
    },
    {
      name: 'server-is-transport',
      severity: 'error',
      comment:
        "The server is the socket, grpc-js, the instrumentation and the daemon's start and stop; it talks to the cri " +
        'layer only. The one module that wires the layers below together is src/cri/services/index.ts ' +
        '(startCriServices), so no server file needs the containerizer, the provisioner, the network or streaming.',
      from: { path: '^src/server/' },
      to: { path: '^src/(containerizer|provisioner|network|streaming)/' },
    },
    {
      name: 'server-sees-the-cri-entry',
      severity: 'error',
      comment:
        'Of the cri layer the server uses the handler tables (services/index.ts), their types (services/handler.ts) ' +
        'and the version (runtime-info.ts); mappings and handlers stay behind them.',
      from: { path: '^src/server/' },
      to: {
        path: '^src/cri/',
        pathNot: ['^src/cri/services/index[.]ts$', '^src/cri/services/handler[.]ts$', '^src/cri/runtime-info[.]ts$'],
      },
    },
    {
      name: 'cri-stays-up',
      severity: 'error',
      comment: 'The generated CRI types belong to the server and the cri layer; nothing below the cri layer knows CRI.',
      from: { path: '^src/', pathNot: ['^src/server/', '^src/cri/', '^src/gen/'] },
      to: { path: '^src/gen/' },
    },
    {
      name: 'containerizer-through-its-facade',
      severity: 'error',
      comment: 'The layers above the containerizer use what src/containerizer/index.ts exports, nothing inside it.',
      from: { path: '^src/(server|cri|streaming|metrics|observability|cli)' },
      to: { path: '^src/containerizer/', pathNot: '^src/containerizer/index[.]ts$' },
    },
    {
      name: 'src-not-tests',
      severity: 'error',
      comment: 'Production code never imports test helpers.',
      from: { path: '^src/' },
      to: { path: '^test/' },
    },
  ],
  options: {
    // Type-only imports count: a cycle through types is still a cycle of meaning.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    // The generated bindings are a leaf: edges into them count, their insides are not read.
    doNotFollow: { path: ['node_modules', '^src/gen/'] },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
