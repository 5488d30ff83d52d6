// The wasm module without its `name` custom section, for deploys.
//
// The name section maps function indexes to Rust names. It is a third of the
// gzipped module (about 240 KB), and nothing at run time reads it except
// stack traces and CPU profiles. `make dev`, `make test` and `make bench`
// keep it (panics and profiles show Rust names); `make build`, the build the
// deploy steps use, drops it, so a cold start fetches and compiles less.
//
//   node scripts/wasm_names.mjs strip IN.wasm [OUT.wasm]   (OUT defaults to IN)
//
// A module is the 8-byte header, then sections: an id byte, a LEB128 size,
// and that many bytes; a custom section (id 0) starts with its name.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Reads an unsigned LEB128 at `at`: [value, next offset]. */
function leb(bytes, at) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const b = bytes[at++];
    if (b === undefined) throw new Error('truncated LEB128');
    value += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if (b < 0x80) return [value, at];
  }
}

/** `module` without its custom sections named `name`. */
export function stripNames(module) {
  const magic = [0x00, 0x61, 0x73, 0x6d];
  if (module.length < 8 || magic.some((b, i) => module[i] !== b)) throw new Error('not a wasm module');
  const kept = [module.subarray(0, 8)];
  let at = 8;
  while (at < module.length) {
    const start = at;
    const id = module[at++];
    const [size, body] = leb(module, at);
    const end = body + size;
    if (end > module.length) throw new Error('truncated section');
    let drop = false;
    if (id === 0) {
      const [len, nameAt] = leb(module, body);
      drop = Buffer.from(module.subarray(nameAt, nameAt + len)).toString('utf8') === 'name';
    }
    if (!drop) kept.push(module.subarray(start, end));
    at = end;
  }
  return Buffer.concat(kept);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [cmd, input, output = input] = process.argv.slice(2);
  if (cmd !== 'strip' || !input) {
    console.error('usage: node scripts/wasm_names.mjs strip IN.wasm [OUT.wasm]');
    process.exit(2);
  }
  writeFileSync(output, stripNames(readFileSync(input)));
}
