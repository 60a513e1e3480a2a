//! The stock `switchyard` binary.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    switchyard::cli::main().await
}
