//! The `psgate` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod clixml;

/// psgate: a browser-based PowerShell Remoting console and its relay.
#[derive(Debug, Parser)]
#[command(name = "psgate", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode, encode and round-trip CLIXML (PowerShell's object serialization).
    #[command(subcommand)]
    Clixml(clixml::ClixmlCommand),
    /// Run psgate on loopback in demo mode, serving the browser console.
    Demo {
        /// Port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 8080, env = "PSGATE_PORT")]
        port: u16,
        /// Folder with the built browser console (Trunk's `dist`).
        #[arg(long, env = "PSGATE_ASSETS", default_value = "dist")]
        assets: PathBuf,
    },
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    init_tracing();
    let result = match cli.command {
        Command::Clixml(cmd) => clixml::run(cmd),
        Command::Demo { port, assets } => demo(SocketAddr::from(([127, 0, 0, 1], port)), assets),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("psgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PSGATE_LOG").unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn demo(addr: SocketAddr, assets: PathBuf) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        println!("psgate demo listening on http://{local}/");
        crate::http::serve(listener, crate::http::AppConfig { assets }, shutdown_signal()).await
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
