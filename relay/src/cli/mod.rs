//! The `psgate` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod clixml;
mod format;
mod invoke;

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
    /// Run one script on a remote PowerShell over SSH, or on a local one, and print what it returns.
    Invoke(invoke::InvokeArgs),
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
    // A server logs its lifecycle; a one-shot command only what went wrong.
    init_tracing(if matches!(cli.command, Command::Demo { .. }) { "info" } else { "warn" });
    let result = match cli.command {
        Command::Clixml(cmd) => clixml::run(cmd),
        Command::Invoke(args) => invoke::run(args),
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

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PSGATE_LOG").unwrap_or_else(|_| default.into());
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
