//! API conformance: schemathesis runs every check it has (`--checks all`:
//! server errors, status codes and content types the document declares,
//! response bodies against their schemas, schema-valid requests accepted and
//! schema-violating ones refused, unknown methods, authentication) against
//! the OpenAPI document the Worker serves, on a `wrangler dev` of its own.
//!
//! Run: `ACTORLINE_ROOT=$PWD cargo test --test conformance -- --nocapture`
//! after `make build` and `source scripts/lib.sh && install_schemathesis`
//! (which sets `SCHEMATHESIS`). `SCHEMATHESIS_SEED=<n>` runs another seed.

#[path = "../support/mod.rs"]
mod support;

use std::process::Command;

use support::*;

/// The seed `make test` runs, so a failure there replays exactly.
const SEED: &str = "20261201";

#[test]
fn schemathesis_passes_every_check_against_the_served_document() {
    let bin = std::env::var("SCHEMATHESIS").unwrap_or_else(|_| {
        panic!("SCHEMATHESIS is not set: run `make test`, or `source scripts/lib.sh && install_schemathesis` first")
    });
    let dir = temp_dir("conformance");
    let server = Server::start(&ServerOptions::new(dir.join("state")));
    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| SEED.into());
    let out = Command::new(&bin)
        .current_dir(&dir)
        .arg("--config-file")
        .arg(root().join("tests/conformance/schemathesis.toml"))
        .arg("run")
        .arg(server.url("/api/openapi.json"))
        .args(["--url", &server.base, "--checks", "all", "--seed", &seed, "--no-color"])
        .args(["--header", &format!("Authorization: Bearer {}", server.admin_token)])
        .output()
        .expect("schemathesis runs");
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found failures (seed {seed}); its report is above");
    // Not a vacuous pass: it reached the API and generated cases.
    assert!(report.contains("Tested: "), "no operation tested");
}
