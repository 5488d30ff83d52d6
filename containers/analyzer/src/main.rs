//! Process entry point: configuration, server lifecycle, graceful shutdown.

use std::future::IntoFuture;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use analyzer::config::{self, Command, Config, USAGE};
use analyzer::index::Index;
use analyzer::{healthcheck, http};

/// After a shutdown signal, connections still open this long are abandoned.
/// Below Docker's default 10 s stop timeout, so we exit 0 rather than being
/// SIGKILLed mid-write.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(8);

fn main() -> ExitCode {
    let command = match config::parse(std::env::args().skip(1), |k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("analyzer: {e}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("analyzer {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Healthcheck(c) => {
            match healthcheck::probe(&c.host, c.port, Duration::from_secs(3)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("analyzer healthcheck: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve(c) => serve(c),
    }
}

fn serve(config: Config) -> ExitCode {
    // Replay before binding: the port opening is the readiness signal for
    // both the Containers runtime and the test harness.
    let (index, report) = match Index::open(&config.data_dir, config.fsync) {
        Ok(opened) => opened,
        Err(e) => {
            eprintln!(
                "analyzer: cannot open index in {}: {e}",
                config.data_dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "analyzer: index {}: {} documents from {} records and {} removals ({} skipped, {} torn bytes dropped{})",
        index.log_path().display(),
        report.documents,
        report.records,
        report.removals,
        report.skipped,
        report.truncated_bytes,
        if report.compacted { ", compacted" } else { "" },
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("analyzer: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config, Arc::new(index)))
}

async fn run(config: Config, index: Arc<Index>) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind((config.host.as_str(), config.port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("analyzer: cannot bind {}:{}: {e}", config.host, config.port);
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("analyzer: cannot read bound address: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Exactly one stdout line; harnesses parse it to learn the port.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "analyzer listening on http://{addr}");
    let _ = stdout.flush();
    drop(stdout);

    let (signalled_tx, mut signalled_rx) = tokio::sync::watch::channel(false);
    let app = http::router(Arc::clone(&index), config.max_body_bytes);
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            eprintln!("analyzer: shutting down, draining in-flight requests");
            let _ = signalled_tx.send(true);
        })
        .into_future();
    let drain_deadline = async move {
        let _ = signalled_rx.wait_for(|s| *s).await;
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };

    let mut code = ExitCode::SUCCESS;
    tokio::select! {
        result = server => {
            if let Err(e) = result {
                eprintln!("analyzer: server error: {e}");
                code = ExitCode::FAILURE;
            }
        }
        () = drain_deadline => {
            eprintln!("analyzer: drain timeout, closing remaining connections");
        }
    }
    if let Err(e) = index.sync() {
        eprintln!("analyzer: failed to sync index: {e}");
        code = ExitCode::FAILURE;
    }
    code
}

/// Resolves on Ctrl-C or SIGTERM (what `docker stop` and the Containers
/// runtime send). If a handler cannot be installed that source is ignored
/// rather than treated as an immediate shutdown.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
