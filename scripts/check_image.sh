#!/usr/bin/env bash
# Builds the analyzer the way containers/analyzer/Dockerfile does, without a
# Docker engine: the build context is filtered by the Dockerfile's dockerignore
# (BuildKit's rules), the builder stage's COPY steps copy exactly those files
# into a temp dir, its RUN steps replay there, and its `cargo build` runs with
# --offline against the local registry. Fails when the image would not build,
# e.g. when a workspace member's manifest is missing from the context, or when
# a locked dependency needs a newer Rust than the builder image's rust:<version>
# (the host's toolchain builds it, so that is checked from rust-version).
#
#   scripts/check_image.sh [path/to/Dockerfile]   (default: the analyzer's)
#
# CHECK_IMAGE_TARGET_DIR (default target/check-image) is the shared cargo
# target dir; file times are kept, so a second run rebuilds only what changed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DOCKERFILE="${1:-containers/analyzer/Dockerfile}"
export CARGO_TARGET_DIR="${CHECK_IMAGE_TARGET_DIR:-$ROOT/target/check-image}"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/check-image.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# The plan: copies the filtered context into $tmp/fs (the image's root) and
# prints the builder stage's steps as a shell script.
node - "$ROOT" "$DOCKERFILE" "$tmp/fs" > "$tmp/steps.sh" <<'JS'
const fs = require("fs");
const path = require("path").posix;
const [root, dockerfileArg, fsRoot] = process.argv.slice(2);
const fail = (msg) => { console.error(`check_image: ${msg}`); process.exit(1); };
const shq = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;

// ---- Dockerfile: instructions with continuations joined, comments dropped.
const dockerfile = path.resolve(root, dockerfileArg);
if (!fs.existsSync(dockerfile)) fail(`no Dockerfile at ${dockerfile}`);
const instructions = [];
let pending = null;
for (const raw of fs.readFileSync(dockerfile, "utf8").split("\n")) {
  const line = raw.replace(/\s+$/, "");
  if (/^\s*#/.test(line) || (pending === null && line.trim() === "")) continue;
  const cont = line.endsWith("\\");
  const text = cont ? line.slice(0, -1) : line;
  pending = pending === null ? text.trim() : `${pending} ${text.trim()}`;
  if (!cont) {
    const m = pending.match(/^(\S+)\s*(.*)$/);
    instructions.push({ op: m[1].toUpperCase(), args: m[2] });
    pending = null;
  }
}
const stages = [];
for (const ins of instructions) {
  if (ins.op === "FROM") stages.push([ins]);
  else if (stages.length) stages[stages.length - 1].push(ins);
}
const isCargoBuild = (ins) => ins.op === "RUN" && /\bcargo\s+build\b/.test(ins.args);
const builders = stages.filter((s) => s.some(isCargoBuild));
if (builders.length !== 1) fail(`expected one stage running \`cargo build\`, found ${builders.length}`);

// ---- dockerignore: <Dockerfile>.dockerignore, else .dockerignore at the context root.
function readIgnore() {
  for (const f of [`${dockerfile}.dockerignore`, path.join(root, ".dockerignore")]) {
    if (fs.existsSync(f)) return fs.readFileSync(f, "utf8");
  }
  return "";
}
// moby/patternmatcher: cleaned, slash-separated, leading "/" dropped; `*` and
// `?` stay within one path element, `**` spans directories; the last pattern
// that matches the path or one of its parent directories decides.
function compile(pattern) {
  let re = "^";
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i];
    if (ch === "*") {
      if (pattern[i + 1] === "*") {
        i++;
        if (pattern[i + 1] === "/") i++;
        re += i + 1 >= pattern.length ? ".*" : "(.*/)?";
      } else re += "[^/]*";
    } else if (ch === "?") re += "[^/]";
    else if (ch === "\\" && i + 1 < pattern.length) re += `\\${pattern[++i]}`;
    else if (ch === "[" || ch === "]") re += ch;
    else re += ch.replace(/[.+()|{}$^]/g, "\\$&");
  }
  return new RegExp(`${re}$`);
}
const patterns = [];
for (let line of readIgnore().split("\n")) {
  line = line.trim();
  if (!line || line.startsWith("#")) continue;
  const exception = line.startsWith("!");
  let p = path.normalize(exception ? line.slice(1).trim() : line).replace(/\/+$/, "");
  if (p.length > 1 && p.startsWith("/")) p = p.slice(1);
  patterns.push({ exception, re: compile(p) });
}
// Index of the last pattern that matches `rel` or a parent of it, or -1.
function lastMatch(rel) {
  const parts = rel.split("/");
  const candidates = parts.map((_, i) => parts.slice(0, i + 1).join("/"));
  for (let i = patterns.length - 1; i >= 0; i--) {
    if (candidates.some((c) => patterns[i].re.test(c))) return i;
  }
  return -1;
}
const excluded = (rel) => {
  const i = lastMatch(rel);
  return i >= 0 && !patterns[i].exception;
};
// A directory can be skipped when it is excluded and no exception comes after
// the pattern that excludes it (that pattern then excludes every descendant).
const prunable = (rel) => {
  const i = lastMatch(rel);
  return i >= 0 && !patterns[i].exception && !patterns.slice(i + 1).some((p) => p.exception);
};

// ---- The context: every file the filter lets through (relative paths).
const context = new Set();
(function walk(dir) {
  for (const e of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const rel = dir ? `${dir}/${e.name}` : e.name;
    if (e.isDirectory()) {
      if (!prunable(rel)) walk(rel);
    } else if (!excluded(rel)) context.add(rel);
  }
})("");
const underDir = (dir) => [...context].filter((f) => dir === "." || f.startsWith(`${dir}/`));

// ---- Replay the builder stage.
let workdir = "/";
const env = [];
const runs = [];
const copyFile = (rel, dest) => {
  const to = path.join(fsRoot, dest);
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.cpSync(path.join(root, rel), to, { verbatimSymlinks: true, preserveTimestamps: true });
};
for (const ins of builders[0]) {
  if (ins.op === "WORKDIR") {
    workdir = path.resolve(workdir, ins.args.trim());
    fs.mkdirSync(path.join(fsRoot, workdir), { recursive: true });
  } else if (ins.op === "ENV") {
    for (const m of ins.args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) env.push([m[1], m[2].replace(/^"|"$/g, "")]);
  } else if (ins.op === "COPY" || ins.op === "ADD") {
    let words = ins.args.trim().startsWith("[") ? JSON.parse(ins.args) : ins.args.trim().split(/\s+/);
    if (words.some((w) => w.startsWith("--from"))) continue;
    words = words.filter((w) => !w.startsWith("--"));
    const dest = path.resolve(workdir, words.pop());
    const intoDir = words.length > 1 || /\/\.?$/.test(ins.args.trim().split(/\s+/).pop());
    for (const srcArg of words) {
      const src = path.normalize(srcArg.replace(/^\/+/, "")).replace(/\/+$/, "") || ".";
      const re = /[*?[]/.test(src) ? compile(src) : null;
      const tops = re
        ? [...new Set([...context].map((f) => f.split("/").slice(0, src.split("/").length).join("/")))].filter((c) => re.test(c))
        : [src];
      if (!tops.length) fail(`${ins.op} ${srcArg}: nothing in the build context matches`);
      for (const top of tops) {
        if (context.has(top)) {
          copyFile(top, intoDir ? path.join(dest, path.basename(top)) : dest);
        } else {
          const files = underDir(top);
          if (!files.length) fail(`${ins.op} ${srcArg}: not in the build context (check ${path.basename(dockerfile)}.dockerignore)`);
          for (const f of files) copyFile(f, path.join(dest, top === "." ? f : f.slice(top.length + 1)));
        }
      }
    }
  } else if (ins.op === "RUN") {
    // Flags such as --mount=type=cache,… only matter inside BuildKit.
    const cmd = ins.args.replace(/^(\s*--\S+)+\s*/, "");
    if (isCargoBuild(ins)) {
      const build = cmd.split("&&").map((s) => s.trim()).find((s) => /^cargo\s+build\b/.test(s));
      runs.push(`${build} --offline`);
    } else {
      // Replayed on the host (as whoever runs make test): a step that would
      // install, fetch or change anything outside the build directory is
      // refused here rather than run.
      const hostly = cmd.match(/(?:^|[\s;&|({])(apt-get|apt|apk|dpkg|yum|dnf|curl|wget|pip3?|npm|npx|cargo|rustup|sudo|su|useradd|groupadd|adduser|chmod|chown|ln|rm)(?=\s|$)/);
      const absolute = cmd.match(/(?:^|[\s=<>])(\/(?!dev\/null\b)\S*)/);
      if (hostly || absolute) fail(`RUN ${cmd.slice(0, 120)}: not replayable on the host (${hostly ? hostly[1] : absolute[1]}); keep the builder's RUN steps to the build directory`);
      runs.push(cmd);
    }
  }
}
const out = ["set -e", `cd ${shq(path.join(fsRoot, workdir))}`];
for (const [k, v] of env) out.push(`export ${k}=${shq(v)}`);
for (const r of runs) out.push(`echo ${shq(`check_image: RUN ${r}`)} >&2`, `sh -c ${shq(r)}`);
console.error(`check_image: ${context.size} files in the build context, ${runs.length} RUN steps`);
console.log(out.join("\n"));

// For the toolchain check below: the image's Rust version and the package built.
const image = builders[0][0].args.match(/\brust:(\d+\.\d+)/);
const cargoBuild = builders[0].find(isCargoBuild).args.match(/(?:-p|--package)[\s=](\S+)/);
fs.writeFileSync(path.join(path.dirname(fsRoot), "image.json"), JSON.stringify({
  rust: image && image[1], package: cargoBuild && cargoBuild[1], workdir: path.join(fsRoot, workdir),
}));
JS

bash "$tmp/steps.sh"

# The host's cargo may be newer than the image's: every locked dependency of the
# built package must declare a rust-version the image's Rust satisfies.
node - "$tmp/image.json" <<'JS'
const fs = require("fs");
const { execFileSync } = require("child_process");
const { rust, package: pkg, workdir } = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
if (!rust || !pkg) {
  console.error("check_image: builder image is not rust:<version> or no -p <package>: rust-version check skipped");
  process.exit(0);
}
const meta = JSON.parse(execFileSync("cargo", ["metadata", "--offline", "--locked", "--format-version", "1",
  "--filter-platform", "x86_64-unknown-linux-gnu"], { cwd: workdir, maxBuffer: 64 << 20 }));
const byId = new Map(meta.packages.map((p) => [p.id, p]));
const nodes = new Map(meta.resolve.nodes.map((n) => [n.id, n]));
const start = meta.packages.find((p) => p.name === pkg && p.source === null);
const seen = new Set();
const todo = [start.id];
while (todo.length) {
  const id = todo.pop();
  if (seen.has(id)) continue;
  seen.add(id);
  for (const d of nodes.get(id).deps) if (d.dep_kinds.some((k) => k.kind !== "dev")) todo.push(d.pkg);
}
const num = (v) => v.split(".").map(Number);
const newer = (a, b) => { const [x, y] = [num(a), num(b)]; return x[0] - y[0] || (x[1] || 0) - (y[1] || 0); };
const tooNew = [...seen].map((id) => byId.get(id)).filter((p) => p.rust_version && newer(p.rust_version, rust) > 0);
if (tooNew.length) {
  console.error(`check_image: the image's Rust ${rust} is older than what these need: ` +
    tooNew.map((p) => `${p.name} ${p.version} (rust ${p.rust_version})`).join(", "));
  process.exit(1);
}
console.error(`check_image: ${seen.size} packages in ${pkg}'s build, all within the image's Rust ${rust}`);
// The lint below holds the package's own code to its rust-version.
if (!start.rust_version || newer(start.rust_version, rust) !== 0) {
  console.error(`check_image: ${pkg} declares rust-version ${start.rust_version}, not the image's ${rust}`);
  process.exit(1);
}
JS

# The host's Rust may be newer than the image's: the analyzer's own code must
# not use what a later std added (that would fail only at `docker build`).
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy >&2
(cd "$ROOT" && cargo clippy -q -p analyzer --locked --all-targets -- -A clippy::all -D clippy::incompatible_msrv) \
  || { echo "check_image: the analyzer uses an API newer than its rust-version (the image's Rust)" >&2; exit 1; }
echo "check_image: ok, the $DOCKERFILE builder stage builds offline, within the image's Rust" >&2
