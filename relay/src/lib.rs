//! The psgate relay: serves the browser console and runs the command line.
//!
//! Code map: [`cli`] (the `psgate` command line), [`http`] (the web server and its routes).

pub mod cli;
pub mod http;
