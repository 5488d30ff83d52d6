//! Command line and environment configuration.
//!
//! Hand-parsed: eight flags do not justify an argument-parsing dependency in
//! a container image. Precedence is flag > environment > default, so the
//! Dockerfile's baked-in flags can still be overridden at `docker run`.

use std::path::PathBuf;

pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_PORT: u16 = 8788;
pub const DEFAULT_DATA_DIR: &str = "./analyzer-data";
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

pub const USAGE: &str = "\
analyzer - document analysis service (language, readability, keyphrases, near duplicates)

USAGE:
    analyzer [OPTIONS]

OPTIONS:
    --host <HOST>              Address to bind [default: 127.0.0.1]
    --port <PORT>              Port to bind, 0 picks a free one [env: PORT] [default: 8788]
    --data-dir <DIR>           Fingerprint index directory [env: ANALYZER_DATA_DIR]
                               [default: ./analyzer-data]
    --max-body-bytes <N>       Largest accepted request body [default: 1048576]
    --fsync                    fdatasync every index append (survives power loss)
    --healthcheck              GET /health on the configured port and exit 0 (healthy) or 1
    -h, --help                 Print this help
    -V, --version              Print the version
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub max_body_bytes: usize,
    pub fsync: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Serve(Config),
    Healthcheck(Config),
    Help,
    Version,
}

/// Parses `args` (without the program name); `env` looks up environment
/// variables, injected so tests do not depend on the process environment.
pub fn parse<I, F>(args: I, env: F) -> Result<Command, String>
where
    I: IntoIterator<Item = String>,
    F: Fn(&str) -> Option<String>,
{
    let mut host = None;
    let mut port = None;
    let mut data_dir = None;
    let mut max_body_bytes = None;
    let mut fsync = false;
    let mut healthcheck = false;

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} requires a value"))
        };
        match flag.as_str() {
            "--host" => host = Some(value("--host")?),
            "--port" => port = Some(parse_port(&value("--port")?)?),
            "--data-dir" => data_dir = Some(PathBuf::from(value("--data-dir")?)),
            "--max-body-bytes" => {
                let v = value("--max-body-bytes")?;
                let n: usize = v
                    .parse()
                    .map_err(|_| format!("--max-body-bytes: not a byte count: {v:?}"))?;
                if n == 0 {
                    return Err("--max-body-bytes must be greater than 0".into());
                }
                max_body_bytes = Some(n);
            }
            "--fsync" => fsync = true,
            "--healthcheck" => healthcheck = true,
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }

    let port = match port {
        Some(p) => p,
        None => match env("PORT").filter(|v| !v.trim().is_empty()) {
            Some(v) => parse_port(&v).map_err(|e| format!("PORT: {e}"))?,
            None => DEFAULT_PORT,
        },
    };
    let data_dir = data_dir
        .or_else(|| {
            env("ANALYZER_DATA_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let config = Config {
        host: host.unwrap_or_else(|| DEFAULT_HOST.to_owned()),
        port,
        data_dir,
        max_body_bytes: max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        fsync,
    };
    Ok(if healthcheck {
        Command::Healthcheck(config)
    } else {
        Command::Serve(config)
    })
}

fn parse_port(v: &str) -> Result<u16, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("not a port number: {v:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults() {
        let Ok(Command::Serve(c)) = parse(args(&[]), no_env) else {
            panic!("expected serve")
        };
        assert_eq!(c.host, "127.0.0.1");
        assert_eq!(c.port, 8788);
        assert_eq!(c.data_dir, PathBuf::from("./analyzer-data"));
        assert_eq!(c.max_body_bytes, 1 << 20);
        assert!(!c.fsync);
    }

    #[test]
    fn flags_override_env() {
        let env = |k: &str| match k {
            "PORT" => Some("9000".to_owned()),
            "ANALYZER_DATA_DIR" => Some("/env/data".to_owned()),
            _ => None,
        };
        let Ok(Command::Serve(c)) = parse(args(&[]), env) else {
            panic!()
        };
        assert_eq!(
            (c.port, c.data_dir.clone()),
            (9000, PathBuf::from("/env/data"))
        );

        let cmd = parse(
            args(&[
                "--port=0",
                "--host",
                "0.0.0.0",
                "--data-dir",
                "/d",
                "--max-body-bytes",
                "10",
                "--fsync",
            ]),
            env,
        );
        let Ok(Command::Serve(c)) = cmd else { panic!() };
        assert_eq!(
            c,
            Config {
                host: "0.0.0.0".into(),
                port: 0,
                data_dir: PathBuf::from("/d"),
                max_body_bytes: 10,
                fsync: true
            }
        );
    }

    #[test]
    fn modes_and_errors() {
        assert!(
            matches!(parse(args(&["--healthcheck", "--port", "8080"]), no_env), Ok(Command::Healthcheck(c)) if c.port == 8080)
        );
        assert_eq!(parse(args(&["--help"]), no_env), Ok(Command::Help));
        assert_eq!(parse(args(&["-V"]), no_env), Ok(Command::Version));
        assert!(parse(args(&["--port"]), no_env).is_err());
        assert!(parse(args(&["--port", "70000"]), no_env).is_err());
        assert!(parse(args(&["--max-body-bytes", "0"]), no_env).is_err());
        assert!(parse(args(&["--bogus"]), no_env).is_err());
        assert!(parse(args(&[]), |_| Some("nope".into())).is_err());
    }
}
