//! `psgate clixml decode|encode|roundtrip`.

use std::io::{BufRead, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use psgate_shared::clixml::{self, Document, json};

#[derive(Debug, Subcommand)]
pub enum ClixmlCommand {
    /// Print each object of a CLIXML document (or one PSRP message) as one JSON line.
    Decode {
        /// Input file; standard input when absent.
        file: Option<PathBuf>,
    },
    /// Read JSON lines (the shape `decode` prints) and write one CLIXML `<Objs>` document.
    Encode {
        /// Input file; standard input when absent.
        file: Option<PathBuf>,
        /// Start the document with the `#< CLIXML` line pwsh writes.
        #[arg(long)]
        clixml_header: bool,
    },
    /// Decode and re-encode: a document stays a document, a single message stays a message.
    Roundtrip {
        /// Input file; standard input when absent.
        file: Option<PathBuf>,
    },
}

pub fn run(cmd: ClixmlCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ClixmlCommand::Decode { file } => {
            let input = read_input(file.as_ref())?;
            let doc = decode_any(&input)?;
            let mut w = json::Writer::default();
            let mut out = BufWriter::new(std::io::stdout().lock());
            for item in &doc.items {
                writeln!(out, "{}", w.item(item))?;
            }
            out.flush()?;
        }
        ClixmlCommand::Encode { file, clixml_header } => {
            let input = read_input(file.as_ref())?;
            let mut reader = json::Reader::new();
            let mut doc = Document { clixml_header, items: Vec::new() };
            for (n, line) in input.lines().enumerate() {
                let line = line.context("reading input")?;
                if line.trim().is_empty() {
                    continue;
                }
                let value: serde_json::Value =
                    serde_json::from_str(&line).with_context(|| format!("line {}: not JSON", n + 1))?;
                doc.items.push(reader.item(&value).with_context(|| format!("line {}", n + 1))?);
            }
            let xml = clixml::encode_document(&doc)?;
            println!("{xml}");
        }
        ClixmlCommand::Roundtrip { file } => {
            let input = read_input(file.as_ref())?;
            let xml = if clixml::kind_of(&input) == clixml::Kind::Document {
                let doc = clixml::decode_document(&input).context("decoding the document")?;
                clixml::encode_document(&doc)?
            } else {
                let value = clixml::decode_message(&input).context("decoding the message")?;
                clixml::encode_message(&value)?
            };
            println!("{xml}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_input(file: Option<&PathBuf>) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    match file {
        Some(path) => {
            buf = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        }
        None => {
            std::io::stdin().lock().read_to_end(&mut buf).context("reading standard input")?;
        }
    }
    Ok(buf)
}

/// A document, or a single message presented as a one-item document.
fn decode_any(input: &[u8]) -> anyhow::Result<Document> {
    let (kind, doc) = clixml::decode_auto(input).context("decoding")?;
    tracing::debug!(?kind, items = doc.items.len(), "decoded");
    Ok(doc)
}
