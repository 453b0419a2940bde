//! The notes service: `cargo run -p axum-service` (SQLite files next to `service.ini`), or
//! `cargo run -p axum-service --features postgres -- examples/axum-service/service-postgres.ini`.
//!
//! Prints `listening on http://ADDR` once it accepts connections (`app.listen` may use
//! port 0 for a free port). Ctrl-C (SIGINT) stops it gracefully: the server ends its
//! requests, then the registry shuts down (`Registry::shutdown`).

use std::path::PathBuf;
use std::time::Duration;

use sqlassist::Settings;

#[tokio::main]
async fn main() -> Result<(), axum_service::BoxError> {
    let settings = match std::env::args().nth(1) {
        Some(path) => Settings::from_ini_file(&path, "app:main")?,
        None => {
            let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            Settings::from_ini_file(here.join("service.ini"), "app:main")?
        }
    };
    let (app, options, registry) = axum_service::app(&settings)?;
    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    // Ctrl-C: stop taking requests and let the running ones end, then let the registry
    // finish its commits in flight, settle what is left prepared and release its log.
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    let report =
        tokio::task::spawn_blocking(move || registry.shutdown(Duration::from_secs(10))).await??;
    println!("shut down: recovery pass clean: {}", report.is_clean());
    Ok(())
}
