// Node's types for `tsc` (tsconfig.json includes this file). They are named here
// rather than in tsconfig's `"types": ["node"]`, which Deno also reads: there,
// `deno doc` resolves @types/node's `/// <reference path>` lines as package
// names and prints some 60 warnings. Deno brings its own Node types.
/// <reference types="node" />
