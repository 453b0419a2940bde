//! The notes service: `cargo run -p axum-service` (SQLite files next to `service.ini`), or
//! `cargo run -p axum-service --features postgres -- examples/axum-service/service-postgres.ini`.
//!
//! Prints `listening on http://ADDR` once it accepts connections (`app.listen` may use
//! port 0 for a free port).

use std::path::PathBuf;

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
    let (app, options) = axum_service::app(&settings)?;
    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
