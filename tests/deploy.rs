//! The deploy path agrees with itself: the README's "Deploy to Cloudflare"
//! steps, `wrangler.toml` and the code name the same image, index, metadata
//! indexes, models, workers and actors. Static checks; nothing here talks to
//! Cloudflare (the dry-runs in `make test` check the config's schema).

use std::collections::BTreeSet;

use actorline::providers::{EMBED_DIM, EMBED_MODEL, METADATA_INDEXES, TEXT_MODEL};
use toml::{Table, Value};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const README_SECTION: &str = "## Deploy to Cloudflare";
const DOCKERFILE: &str = "containers/analyzer/Dockerfile";
/// wrangler's managed registry (workers-sdk containers-shared `getCloudflareContainerRegistry`).
const REGISTRY: &str = "registry.cloudflare.com";
/// Any account id: both names must resolve to the same repository for every account.
const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";

/// Workers AI models Cloudflare has deprecated, with the date they stop.
/// Source: cloudflare-docs `src/content/changelog/workers-ai/2026-05-08-planned-model-deprecations.mdx`
/// ("Models deprecated on May 30, 2026"; the `-fast` and `-lora` variants stay active).
const DEPRECATED_MODELS: &[(&str, &str)] = &[
    ("@cf/moonshotai/kimi-k2.5", "2026-05-30"),
    ("@hf/meta-llama/meta-llama-3-8b-instruct", "2026-05-30"),
    ("@cf/meta/llama-3-8b-instruct", "2026-05-30"),
    ("@cf/meta/llama-3-8b-instruct-awq", "2026-05-30"),
    ("@cf/meta/llama-3.1-8b-instruct", "2026-05-30"),
    ("@cf/meta/llama-3.1-8b-instruct-awq", "2026-05-30"),
    ("@cf/meta/llama-3.1-70b-instruct", "2026-05-30"),
    ("@cf/meta/llama-2-7b-chat-int8", "2026-05-30"),
    ("@cf/meta/llama-2-7b-chat-fp16", "2026-05-30"),
    ("@cf/mistral/mistral-7b-instruct-v0.1", "2026-05-30"),
    ("@hf/mistral/mistral-7b-instruct-v0.2", "2026-05-30"),
    ("@hf/google/gemma-7b-it", "2026-05-30"),
    ("@cf/google/gemma-3-12b-it", "2026-05-30"),
    ("@hf/nousresearch/hermes-2-pro-mistral-7b", "2026-05-30"),
    ("@cf/microsoft/phi-2", "2026-05-30"),
    ("@cf/defog/sqlcoder-7b-2", "2026-05-30"),
    ("@cf/unum/uform-gen2-qwen-500m", "2026-05-30"),
    ("@cf/facebook/bart-large-cnn", "2026-05-30"),
];

// ------------------------------------------------------------------ inputs

fn wrangler() -> Table {
    let text = std::fs::read_to_string(format!("{ROOT}/wrangler.toml")).expect("read wrangler.toml");
    text.parse().unwrap_or_else(|e| panic!("wrangler.toml does not parse: {e}"))
}

fn env<'a>(config: &'a Table, name: &str) -> Option<&'a Table> {
    config.get("env")?.get(name)?.as_table()
}

fn production(config: &Table) -> &Table {
    env(config, "production").expect("wrangler.toml has no [env.production]")
}

fn str_at<'a>(table: &'a Table, path: &[&str]) -> Option<&'a str> {
    let (last, parents) = path.split_last()?;
    let mut t = table;
    for key in parents {
        t = t.get(*key)?.as_table()?;
    }
    t.get(*last)?.as_str()
}

fn tables<'a>(table: &'a Table, key: &str) -> Vec<&'a Table> {
    table.get(key).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_table).collect()).unwrap_or_default()
}

/// `field` of the one `[[env.production.<key>]]` table (the image, the Vectorize index).
fn production_single(config: &Table, key: &str, field: &str) -> String {
    let found = tables(production(config), key);
    assert_eq!(found.len(), 1, "[env.production] must declare exactly one [[env.production.{key}]]");
    let value = found[0].get(field).and_then(Value::as_str);
    value.unwrap_or_else(|| panic!("[[env.production.{key}]] has no {field}")).to_string()
}

/// The shell commands of the README's deploy section, in order: fenced code
/// lines, `&&` chains split, `# comments` dropped, a leading `npx` dropped.
fn readme_commands() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).expect("read README.md");
    let start = readme.find(README_SECTION).unwrap_or_else(|| panic!("README.md has no \"{README_SECTION}\" section"));
    let section = &readme[start + README_SECTION.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut commands = Vec::new();
    let mut in_code = false;
    for line in section.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().take_while(|w| !w.starts_with('#')).collect();
        for part in words.split(|w| *w == "&&") {
            let part = if part.first() == Some(&"npx") { &part[1..] } else { part };
            if !part.is_empty() {
                commands.push(part.iter().map(|w| w.to_string()).collect());
            }
        }
    }
    assert!(!commands.is_empty(), "README's \"{README_SECTION}\" section has no fenced commands");
    commands
}

/// Commands starting with `prefix`, each with its position in the sequence.
fn commands<'a>(all: &'a [Vec<String>], prefix: &[&str]) -> Vec<(usize, &'a [String])> {
    all.iter()
        .enumerate()
        .filter(|(_, c)| c.len() >= prefix.len() && c.iter().zip(prefix).all(|(a, b)| a == b))
        .map(|(i, c)| (i, c.as_slice()))
        .collect()
}

fn one<'a>(all: &'a [Vec<String>], prefix: &[&str]) -> (usize, &'a [String]) {
    let found = commands(all, prefix);
    assert_eq!(
        found.len(),
        1,
        "README's deploy section must run `{}` exactly once, found {}",
        prefix.join(" "),
        found.len()
    );
    found[0]
}

/// The value of `--name value` or `--name=value` (also a short flag like `-t`).
fn flag<'a>(command: &'a [String], name: &str) -> Option<&'a str> {
    command.iter().enumerate().find_map(|(i, w)| {
        if w == name {
            command.get(i + 1).map(String::as_str)
        } else {
            w.strip_prefix(name).and_then(|rest| rest.strip_prefix('='))
        }
    })
}

/// The positional arguments after the first `skip` words (flags and their values left out).
fn positionals(command: &[String], skip: usize, flags_with_values: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut words = command.iter().skip(skip);
    while let Some(w) = words.next() {
        if flags_with_values.contains(&w.as_str()) {
            words.next();
        } else if !w.starts_with('-') {
            out.push(w.clone());
        }
    }
    out
}

/// workers-sdk containers-shared `resolveImageName`: `image:tag` and
/// `registry.cloudflare.com/image:tag` both land in the account's namespace,
/// names already in it and other registries pass through.
fn resolve_image_name(account: &str, image: &str) -> String {
    let (host, path) = image.split_once('/').map_or((image, ""), |(h, p)| (h, p));
    let (hostname, port) = host.split_once(':').map_or((host, None), |(h, p)| (h, Some(p)));
    let valid_url = port.is_none_or(|p| p.chars().all(|c| c.is_ascii_digit()));
    if !valid_url || (!host.contains(['.', ':']) && hostname != "localhost") {
        return format!("{REGISTRY}/{account}/{image}");
    }
    if hostname != REGISTRY || path.starts_with(account) {
        return image.to_string();
    }
    format!("{hostname}/{account}/{path}")
}

// ------------------------------------------------------------------ checks

#[test]
fn resolve_image_name_follows_wrangler() {
    let a = ACCOUNT;
    assert_eq!(resolve_image_name(a, "app:0.1.0"), format!("{REGISTRY}/{a}/app:0.1.0"));
    assert_eq!(resolve_image_name(a, "team/app:0.1.0"), format!("{REGISTRY}/{a}/team/app:0.1.0"));
    assert_eq!(resolve_image_name(a, "registry.cloudflare.com/app:1"), format!("{REGISTRY}/{a}/app:1"));
    // `http://app:1` parses as host "app", port 1: wrangler passes it through unchanged.
    assert_eq!(resolve_image_name(a, "app:1"), "app:1");
    assert_eq!(resolve_image_name(a, &format!("registry.cloudflare.com/{a}/app:1")), format!("{REGISTRY}/{a}/app:1"));
    assert_eq!(resolve_image_name(a, "docker.io/library/app:1"), "docker.io/library/app:1");
    assert_eq!(resolve_image_name(a, "localhost:5000/app:1"), "localhost:5000/app:1");
}

#[test]
fn readme_pushes_the_image_production_runs() {
    let image = production_single(&wrangler(), "containers", "image");
    let cmds = readme_commands();
    let (_, build) = one(&cmds, &["docker", "build"]);
    let (_, push) = one(&cmds, &["wrangler", "containers", "push"]);
    let built = flag(build, "-t").or_else(|| flag(build, "--tag")).expect("README's docker build has no -t tag");
    let pushed = positionals(push, 3, &[]);
    assert_eq!(pushed, [built], "README pushes {pushed:?} but builds the tag {built}");
    assert_eq!(
        resolve_image_name(ACCOUNT, built),
        resolve_image_name(ACCOUNT, &image),
        "README pushes {built} and wrangler.toml runs {image}: they resolve to different repositories"
    );
}

/// The image's tag is the analyzer crate's version: a deploy whose
/// container `image` is unchanged starts no rollout (containers
/// `deploy.ts`: "No changes to be made"), so a rebuilt analyzer pushed under
/// the old tag would never replace the running one. A change to the
/// analyzer bumps its version, and with it the tag it deploys as.
#[test]
fn the_image_tag_is_the_analyzers_version() {
    let image = production_single(&wrangler(), "containers", "image");
    let manifest: Table = std::fs::read_to_string(format!("{ROOT}/containers/analyzer/Cargo.toml")).unwrap().parse().unwrap();
    let version = str_at(&manifest, &["package", "version"]).expect("the analyzer's Cargo.toml has a version");
    let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
    assert_eq!(tag, version, "[[env.production.containers]] image {image} must be tagged with the analyzer's version {version}");
}

/// The names of the bindings `table` declares, of every kind the code
/// reads: AI, Vectorize, D1, R2, queue producers, Durable Objects, service
/// bindings (which stand in for AI and Vectorize in the emulated env).
fn binding_names(table: &Table) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut add = |t: &Table, field: &str| names.extend(t.get(field).and_then(Value::as_str).map(str::to_string));
    if let Some(ai) = table.get("ai").and_then(Value::as_table) {
        add(ai, "binding");
    }
    for key in ["vectorize", "d1_databases", "r2_buckets", "services"] {
        tables(table, key).into_iter().for_each(|t| add(t, "binding"));
    }
    if let Some(queues) = table.get("queues").and_then(Value::as_table) {
        tables(queues, "producers").into_iter().for_each(|t| add(t, "binding"));
    }
    if let Some(dos) = table.get("durable_objects").and_then(Value::as_table) {
        tables(dos, "bindings").into_iter().for_each(|t| add(t, "name"));
    }
    names
}

/// Every binding the code reads (`config::binding`, the one list the code
/// takes its names from) is bound in each environment under that name, or it
/// is missing only once that environment runs. The default (local)
/// environment runs the embedded providers, so it may leave out AI and
/// VECTORIZE; the emulated and production ones bind them.
#[test]
fn every_environment_binds_every_name_the_code_reads() {
    use actorline::config::binding;
    let config = wrangler();
    for (name, table) in [("default", &config), ("emulated", env(&config, "emulated").expect("wrangler.toml has [env.emulated]")), ("production", production(&config))] {
        let bound = binding_names(table);
        let missing: Vec<_> = binding::ALL
            .iter()
            .filter(|b| !bound.contains(**b))
            .filter(|b| !(name == "default" && [binding::AI, binding::VECTORIZE].contains(*b)))
            .collect();
        assert!(missing.is_empty(), "the {name} environment of wrangler.toml does not bind {missing:?}, which the code reads");
    }
}

/// The production-mode suite (tests/prod) runs the code against the
/// emulated env's bindings: production must bind each of them under the same
/// name. The one exception stands in for `ctx.container`, which production's
/// container provides.
#[test]
fn production_binds_every_name_the_production_mode_suite_reads() {
    let config = wrangler();
    let emulated = env(&config, "emulated").expect("wrangler.toml has [env.emulated]");
    let mut wanted = binding_names(emulated);
    wanted.remove("ANALYZER_CONTAINER_EMULATOR");
    let bound = binding_names(production(&config));
    let missing: Vec<_> = wanted.difference(&bound).collect();
    assert!(missing.is_empty(), "[env.production] does not bind what the production-mode suite runs on: {missing:?}");
}

#[test]
fn readme_builds_the_image_for_linux_amd64_from_the_dockerfile() {
    let cmds = readme_commands();
    let (_, build) = one(&cmds, &["docker", "build"]);
    assert_eq!(
        flag(build, "--platform"),
        Some("linux/amd64"),
        "README's docker build needs --platform linux/amd64 (Containers run amd64; `wrangler containers push` checks it)"
    );
    assert_eq!(flag(build, "-f"), Some(DOCKERFILE), "README's docker build must use -f {DOCKERFILE}");
    let context = positionals(build, 2, &["-f", "-t", "--tag", "--platform", "--file"]);
    assert_eq!(context, ["."], "README's docker build context must be the workspace root `.` (see the Dockerfile)");
}

#[test]
fn vectorize_index_matches_the_embedder() {
    let index = production_single(&wrangler(), "vectorize", "index_name");
    let cmds = readme_commands();
    let (_, create) = one(&cmds, &["wrangler", "vectorize", "create"]);
    assert_eq!(
        positionals(create, 3, &["--dimensions", "--metric"]),
        [index.as_str()],
        "README creates a different index than wrangler.toml binds ({index})"
    );
    // Higher scores rank first (`vectorize_payloads::parse_matches`, the
    // fusion): true of cosine, not of euclidean, where 0 is identical.
    assert_eq!(flag(create, "--metric"), Some("cosine"), "README must create the index with --metric cosine");
    let dims = flag(create, "--dimensions").expect("README's vectorize create has no --dimensions");
    assert_eq!(
        dims,
        EMBED_DIM.to_string(),
        "README creates {dims}-d vectors but {EMBED_MODEL} gives EMBED_DIM = {EMBED_DIM}"
    );
}

#[test]
fn readme_creates_every_metadata_index_before_deploying() {
    let index = production_single(&wrangler(), "vectorize", "index_name");
    let cmds = readme_commands();
    let (deploy_at, _) = one(&cmds, &["wrangler", "deploy"]);
    let mut created = BTreeSet::new();
    for (at, cmd) in commands(&cmds, &["wrangler", "vectorize", "create-metadata-index"]) {
        let on = positionals(cmd, 3, &["--property-name", "--propertyName", "--type"]);
        assert_eq!(on, [index.as_str()], "README creates a metadata index on {on:?}, not on {index}");
        assert!(
            at < deploy_at,
            "README creates a metadata index after `wrangler deploy`; vectors upserted before it are not indexed"
        );
        let property = flag(cmd, "--property-name")
            .or_else(|| flag(cmd, "--propertyName"))
            .expect("create-metadata-index without --property-name");
        let kind = flag(cmd, "--type").expect("create-metadata-index without --type");
        created.insert((property.to_string(), kind.to_string()));
    }
    let wanted: BTreeSet<_> = METADATA_INDEXES.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect();
    assert_eq!(created, wanted, "README's metadata indexes differ from providers::METADATA_INDEXES (property, type)");
}

/// A deprecated model can never ship again (the text model once was
/// `@cf/meta/llama-3.1-8b-instruct`, past its retirement date).
#[test]
fn workers_ai_models_are_not_deprecated() {
    for (role, model) in [("TEXT_MODEL", TEXT_MODEL), ("EMBED_MODEL", EMBED_MODEL)] {
        if let Some((_, date)) = DEPRECATED_MODELS.iter().find(|(m, _)| *m == model) {
            panic!("providers::{role} = {model} was deprecated by Workers AI on {date} (2026-05-08 planned-model-deprecations changelog)");
        }
    }
}

#[test]
fn readme_creates_and_migrates_the_production_database() {
    let config = wrangler();
    let dbs = tables(production(&config), "d1_databases");
    let db = dbs
        .iter()
        .find(|t| t.get("binding").and_then(Value::as_str) == Some("DB"))
        .expect("[env.production] binds no D1 database as DB");
    let name = db.get("database_name").and_then(Value::as_str).expect("production D1 binding has no database_name");
    let cmds = readme_commands();
    let (created_at, create) = one(&cmds, &["wrangler", "d1", "create"]);
    assert_eq!(positionals(create, 3, &[]), [name], "README creates a D1 database other than production's {name}");
    let (applied_at, apply) = one(&cmds, &["wrangler", "d1", "migrations", "apply"]);
    assert!(created_at < applied_at, "README applies migrations before creating the database");
    assert_eq!(positionals(apply, 4, &["--env"]), ["DB"], "README's migrations apply must name the binding DB");
    assert!(
        apply.iter().any(|w| w == "--remote"),
        "README's migrations apply needs --remote (else it migrates the local database)"
    );
}

#[test]
fn readme_targets_production_in_every_worker_command() {
    let cmds = readme_commands();
    for prefix in
        [&["wrangler", "d1", "migrations", "apply"][..], &["wrangler", "secret", "put"], &["wrangler", "deploy"]]
    {
        for (_, cmd) in commands(&cmds, prefix) {
            assert_eq!(
                flag(cmd, "--env"),
                Some("production"),
                "README's `{}` must pass --env production",
                cmd.join(" ")
            );
        }
    }
    let (deploy_at, _) = one(&cmds, &["wrangler", "deploy"]);
    let (build_at, _) = one(&cmds, &["make", "build"]);
    assert!(build_at < deploy_at, "README deploys before `make build` (wrangler does not build the Worker)");
}

#[test]
fn worker_names_differ_between_environments() {
    let config = wrangler();
    let default = str_at(&config, &["name"]).expect("wrangler.toml has no top-level name");
    let mut names = vec![("default", default)];
    for env_name in ["production", "emulated"] {
        if let Some(e) = env(&config, env_name) {
            // An environment without `name` deploys as "<name>-<env>".
            names.push((env_name, str_at(e, &["name"]).unwrap_or(default)));
        }
    }
    for (i, (a, a_name)) in names.iter().enumerate() {
        for (b, b_name) in &names[i + 1..] {
            assert_ne!(
                a_name, b_name,
                "environments {a} and {b} both deploy the Worker \"{a_name}\": deploying one replaces the other"
            );
        }
    }
}

fn durable_objects(table: &Table) -> BTreeSet<(String, String)> {
    tables(table.get("durable_objects").and_then(Value::as_table).unwrap_or(&Table::new()), "bindings")
        .iter()
        .filter_map(|b| Some((b.get("name")?.as_str()?.to_string(), b.get("class_name")?.as_str()?.to_string())))
        .collect()
}

/// The classes the migrations create. Every actor keeps its state in SQLite
/// (`storage().sql()`), which a class gets only from `new_sqlite_classes`;
/// a migration once applied cannot be changed, and a class renamed or
/// deleted would take its objects' state with it: neither is done here.
fn migrated_classes(table: &Table) -> BTreeSet<String> {
    let mut classes = BTreeSet::new();
    for m in tables(table, "migrations") {
        let tag = m.get("tag").and_then(Value::as_str).unwrap_or("?");
        for key in ["new_classes", "renamed_classes", "deleted_classes", "transferred_classes"] {
            assert!(m.get(key).is_none(), "migration {tag} has {key}: actors need new_sqlite_classes, and none is renamed or deleted");
        }
        let listed = m.get("new_sqlite_classes").and_then(Value::as_array).into_iter().flatten();
        classes.extend(listed.filter_map(Value::as_str).map(str::to_string));
    }
    classes
}

/// The migrations production has applied, by tag: they stay as they are
/// (a new class goes in a new migration after them).
const APPLIED_MIGRATIONS: &[(&str, &[&str])] = &[
    ("v1", &["ContentActor", "PipelineActor", "SessionActor", "VectorIndexActor", "FeedActor", "AnalyzerContainer"]),
    ("v2", &["RateLimitActor"]),
    ("v3", &["AnswerActor"]),
    ("v4", &["BatchActor"]),
];

#[test]
fn applied_migrations_are_kept_as_they_were() {
    let config = wrangler();
    for (name, table) in [("default", &config), ("production", production(&config))] {
        let migrations = tables(table, "migrations");
        for (i, (tag, classes)) in APPLIED_MIGRATIONS.iter().enumerate() {
            let m = migrations.get(i).unwrap_or_else(|| panic!("{name}: migration {tag} is gone"));
            assert_eq!(m.get("tag").and_then(Value::as_str), Some(*tag), "{name}: migration {i} must stay {tag}");
            let listed: Vec<&str> = m.get("new_sqlite_classes").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
            assert_eq!(listed, *classes, "{name}: migration {tag} changed");
        }
    }
}

#[test]
fn production_binds_and_migrates_every_actor() {
    let config = wrangler();
    let prod = production(&config);
    let (default_dos, prod_dos) = (durable_objects(&config), durable_objects(prod));
    assert!(!default_dos.is_empty(), "wrangler.toml binds no Durable Objects");
    let missing: Vec<_> = default_dos.difference(&prod_dos).collect();
    assert!(
        missing.is_empty(),
        "[env.production] does not bind these (binding, class) pairs of the default env: {missing:?}"
    );
    let prod_migrated = migrated_classes(prod);
    let unmigrated: Vec<_> = prod_dos.iter().map(|(_, c)| c).filter(|c| !prod_migrated.contains(*c)).collect();
    assert!(
        unmigrated.is_empty(),
        "[env.production] binds classes no [[env.production.migrations]] creates: {unmigrated:?}"
    );
    let default_migrated = migrated_classes(&config);
    let lost: Vec<_> = default_migrated.difference(&prod_migrated).collect();
    assert!(lost.is_empty(), "classes migrated in the default env but not in production: {lost:?}");
    for container in tables(prod, "containers") {
        let class =
            container.get("class_name").and_then(Value::as_str).expect("a production container has no class_name");
        assert!(
            prod_dos.iter().any(|(_, c)| c == class),
            "container class {class} is not bound as a Durable Object in production"
        );
    }
}

/// Actors call each other by JS RPC, which the runtime takes only on classes
/// that extend `DurableObject`; `make build` writes the entry that makes them
/// so (scripts/actor_shim.mjs). Every environment must deploy that entry, and
/// it must wrap every class any environment binds.
#[test]
fn every_env_deploys_the_entry_that_makes_actors_rpc_classes() {
    let config = wrangler();
    let main = config.get("main").and_then(Value::as_str).expect("wrangler.toml has no main");
    assert_eq!(main, "build/worker/shim.mjs", "scripts/lib.sh build_worker writes the actor entry to build/worker/shim.mjs");
    let envs = config.get("env").and_then(Value::as_table).cloned().unwrap_or_default();
    for (name, table) in &envs {
        let own = table.as_table().and_then(|t| t.get("main")).and_then(Value::as_str);
        assert!(own.is_none() || own == Some(main), "[env.{name}] deploys main = {own:?}, not the actor entry {main}");
    }
    let lib = std::fs::read_to_string(format!("{ROOT}/scripts/lib.sh")).expect("scripts/lib.sh");
    assert!(
        lib.contains(&format!("node scripts/actor_shim.mjs wrangler.toml {main}")),
        "build_worker must write the actor entry to {main}"
    );

    let out = std::env::temp_dir().join(format!("actorline-shim-{}.mjs", std::process::id()));
    let status = std::process::Command::new("node")
        .current_dir(ROOT)
        .args(["scripts/actor_shim.mjs", "wrangler.toml"])
        .arg(&out)
        .status()
        .expect("node runs scripts/actor_shim.mjs");
    assert!(status.success(), "scripts/actor_shim.mjs failed");
    let shim = std::fs::read_to_string(&out).expect("the shim was written");
    let _ = std::fs::remove_file(&out);
    assert!(shim.contains("import { DurableObject } from 'cloudflare:workers';"), "{shim}");
    assert!(shim.contains("return class extends DurableObject {"), "{shim}");
    for entry in ["fetch", "alarm", "webSocketMessage", "webSocketClose", "webSocketError", "call"] {
        assert!(shim.contains(&format!("    {entry}(...args) {{\n      return this.rust.{entry}(...args);")), "the shim does not hand {entry} to the Rust actor");
    }
    let mut bound = durable_objects(&config);
    for table in envs.values().filter_map(Value::as_table) {
        bound.extend(durable_objects(table));
    }
    for (_, class) in &bound {
        assert!(
            shim.contains(&format!("export const {class} = actorClass(wasm.{class});")),
            "the actor entry does not export {class} as a DurableObject class"
        );
    }
}

#[test]
fn emulated_env_runs_production_vars() {
    let config = wrangler();
    let Some(emulated) = env(&config, "emulated") else { return };
    let vars = |t: &Table| t.get("vars").cloned();
    assert_eq!(
        vars(emulated),
        vars(production(&config)),
        "[env.emulated.vars] must equal [env.production.vars], so the production-mode suite runs production's settings"
    );
}

/// From this compatibility date, or with the flag, pending `waitUntil` work and
/// outgoing calls keep an idle Durable Object alive (cloudflare-docs
/// `compatibility-flags/durable-object-io-tasks-prevent-eviction.md`).
const DO_IO_KEEPALIVE_DATE: &str = "2026-10-01";
const DO_IO_KEEPALIVE_FLAG: &str = "durable_object_io_tasks_prevent_eviction";

fn compatibility_flags(table: &Table) -> Option<BTreeSet<String>> {
    let flags = table.get("compatibility_flags")?.as_array()?;
    Some(flags.iter().filter_map(Value::as_str).map(str::to_string).collect())
}

#[test]
fn production_keeps_pending_durable_object_io_alive() {
    let config = wrangler();
    let prod = production(&config);
    let top_flags = compatibility_flags(&config).unwrap_or_default();
    // An environment's compatibility_flags replaces the top level's list.
    let prod_flags = compatibility_flags(prod).unwrap_or_else(|| top_flags.clone());
    let lost: Vec<_> = top_flags.difference(&prod_flags).collect();
    assert!(lost.is_empty(), "[env.production] compatibility_flags drops the top level's {lost:?}");
    let date = str_at(prod, &["compatibility_date"])
        .or_else(|| str_at(&config, &["compatibility_date"]))
        .expect("no compatibility_date");
    assert!(
        date >= DO_IO_KEEPALIVE_DATE || prod_flags.contains(DO_IO_KEEPALIVE_FLAG),
        "production runs compatibility date {date} without {DO_IO_KEEPALIVE_FLAG}: an idle Durable Object may be evicted \
         with waitUntil work (catalog writes, pushes) pending; set the flag or a date >= {DO_IO_KEEPALIVE_DATE}"
    );
}

/// `(binding, bucket)` of every R2 bucket a table binds.
fn r2_buckets(table: &Table) -> BTreeSet<(String, String)> {
    tables(table, "r2_buckets")
        .iter()
        .filter_map(|t| Some((t.get("binding")?.as_str()?.to_string(), t.get("bucket_name")?.as_str()?.to_string())))
        .collect()
}

/// Uploads keep their originals in R2: every environment binds the same
/// `UPLOADS` bucket (bindings are not inherited by environments).
#[test]
fn every_env_binds_the_uploads_bucket() {
    let config = wrangler();
    let uploads = ("UPLOADS".to_string(), "actorline-uploads".to_string());
    assert!(r2_buckets(&config).contains(&uploads), "the default env does not bind R2 bucket {uploads:?}");
    assert_eq!(r2_buckets(production(&config)), r2_buckets(&config), "[env.production] binds other R2 buckets than the default env");
    if let Some(emulated) = env(&config, "emulated") {
        assert_eq!(r2_buckets(emulated), r2_buckets(&config), "[env.emulated] binds other R2 buckets than the default env");
    }
}

/// The bulk-import queues (src/ingest.rs): the producer `INGEST`, a consumer
/// of the queue that dead-letters into the queue the code names as its DLQ,
/// and a consumer of that DLQ (which marks dead items failed). Checked in
/// every environment, so the local suites run the production wiring.
#[test]
fn every_env_produces_and_consumes_the_ingest_queues() {
    use actorline::config::INGEST_DLQ;
    let config = wrangler();
    let mut envs = vec![("default", &config), ("production", production(&config))];
    envs.extend(env(&config, "emulated").map(|e| ("emulated", e)));
    for (name, table) in envs {
        let queues = table.get("queues").and_then(Value::as_table).unwrap_or_else(|| panic!("{name}: no queues"));
        let producers = tables(queues, "producers");
        let ingest: Vec<&str> = producers
            .iter()
            .filter(|p| p.get("binding").and_then(Value::as_str) == Some("INGEST"))
            .filter_map(|p| p.get("queue").and_then(Value::as_str))
            .collect();
        assert_eq!(ingest.len(), 1, "{name}: one INGEST producer binding");
        let consumers = tables(queues, "consumers");
        let of = |q: &str| consumers.iter().find(|c| c.get("queue").and_then(Value::as_str) == Some(q)).copied();
        let main = of(ingest[0]).unwrap_or_else(|| panic!("{name}: nothing consumes {}", ingest[0]));
        assert_eq!(main.get("dead_letter_queue").and_then(Value::as_str), Some(INGEST_DLQ), "{name}: {} must dead-letter into {INGEST_DLQ}", ingest[0]);
        let retries = main.get("max_retries").and_then(Value::as_integer).unwrap_or_else(|| panic!("{name}: set max_retries"));
        assert!((1..=100).contains(&retries), "{name}: max_retries {retries} outside Queues' 0..=100");
        let batch = main.get("max_batch_size").and_then(Value::as_integer).unwrap_or(10);
        assert!((1..=100).contains(&batch), "{name}: max_batch_size {batch} outside Queues' 1..=100");
        assert!(of(INGEST_DLQ).is_some(), "{name}: nothing consumes the dead-letter queue {INGEST_DLQ}");
        assert_ne!(ingest[0], INGEST_DLQ);
    }
}

/// The README creates the uploads bucket and both ingest queues that
/// `[env.production]` names, before it deploys (a deploy that binds a missing
/// bucket or queue fails).
#[test]
fn readme_creates_the_bucket_and_queues_before_deploying() {
    let config = wrangler();
    let prod = production(&config);
    let cmds = readme_commands();
    let (deployed_at, _) = one(&cmds, &["wrangler", "deploy"]);
    for (_, bucket) in r2_buckets(prod) {
        let (at, create) = one(&cmds, &["wrangler", "r2", "bucket", "create"]);
        assert_eq!(positionals(create, 4, &[]), [bucket.clone()], "README creates an R2 bucket other than production's {bucket}");
        assert!(at < deployed_at, "README creates the bucket {bucket} after deploying");
    }
    let queues = prod.get("queues").and_then(Value::as_table).expect("[env.production] has no queues");
    let mut named: BTreeSet<String> = BTreeSet::new();
    for t in tables(queues, "producers").into_iter().chain(tables(queues, "consumers")) {
        named.extend(t.get("queue").and_then(Value::as_str).map(String::from));
        named.extend(t.get("dead_letter_queue").and_then(Value::as_str).map(String::from));
    }
    let created: BTreeSet<String> = commands(&cmds, &["wrangler", "queues", "create"])
        .into_iter()
        .inspect(|(at, c)| assert!(*at < deployed_at, "README runs `{}` after deploying", c.join(" ")))
        .flat_map(|(_, c)| positionals(c, 3, &[]))
        .collect();
    assert_eq!(created, named, "README must create exactly the queues [env.production] names");
}

// ------------------------------------------------------------------ tooling

/// The packages a JS file imports by bare name (not a path, nor a runtime
/// module such as `node:fs` or `cloudflare:workers`), scoped ones as `@a/b`.
fn bare_imports(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for opener in ["from ", "import ", "import(", "require("] {
        for (at, _) in source.match_indices(opener) {
            let rest = source[at + opener.len()..].trim_start();
            let Some(quote) = rest.chars().next().filter(|c| matches!(c, '\'' | '"')) else { continue };
            let Some(end) = rest[1..].find(quote) else { continue };
            let spec = &rest[1..1 + end];
            if spec.is_empty() || spec.starts_with(['.', '/']) || spec.contains(':') {
                continue;
            }
            let parts: Vec<&str> = spec.split('/').collect();
            let name = if spec.starts_with('@') && parts.len() > 1 { format!("{}/{}", parts[0], parts[1]) } else { parts[0].to_string() };
            found.insert(name);
        }
    }
    found
}

/// The tracked JS and TS files under `dir`, outside installed or built trees.
fn js_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && !["node_modules", "target", "build", "dist"].contains(&name.as_str()) {
                js_files(&path, out);
            }
        } else if [".mjs", ".js", ".cjs", ".ts"].iter().any(|ext| name.ends_with(ext)) && !name.ends_with(".d.ts") {
            out.push(path);
        }
    }
}

/// Every package a script, test or the bench peer imports is declared in the
/// nearest `package.json` (so `npm ci` pins it), not only present because
/// another package happens to depend on it: `make test` on a fresh machine
/// installs what is declared.
#[test]
fn every_imported_package_is_declared() {
    let root = std::path::Path::new(ROOT);
    let mut files = Vec::new();
    js_files(root, &mut files);
    assert!(files.len() > 5, "found only {files:?}");
    let mut checked = 0;
    for file in files {
        let manifest = file.ancestors().skip(1).map(|d| d.join("package.json")).find(|p| p.exists()).expect("a package.json above every JS file");
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
        let declared: BTreeSet<&str> = ["dependencies", "devDependencies"]
            .iter()
            .filter_map(|k| json.get(k).and_then(|d| d.as_object()))
            .flat_map(|d| d.keys().map(String::as_str))
            .collect();
        for name in bare_imports(&std::fs::read_to_string(&file).unwrap()) {
            checked += 1;
            assert!(declared.contains(name.as_str()), "{} imports `{name}`, which {} does not declare", file.display(), manifest.display());
        }
    }
    assert!(checked >= 3, "the import scan found only {checked} packages");
}

#[test]
fn bare_imports_are_read_from_every_form() {
    let src = "import WebSocket from 'ws';\nimport { a,\n b } from \"@scope/pkg/sub\";\nconst { chromium } = await import('playwright-core');\nimport x from './local.js';\nimport fs from 'node:fs';\nimport { DurableObject } from 'cloudflare:workers';\nconst y = require('left-pad');";
    let want: BTreeSet<String> = ["ws", "@scope/pkg", "playwright-core", "left-pad"].map(String::from).into();
    assert_eq!(bare_imports(src), want);
}
