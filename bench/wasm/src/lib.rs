//! The decoder and encoder exported to JavaScript, so the benchmark can time them as WebAssembly.

use psgate_shared::clixml::{Limits, decode_document_with, encode_document};
use wasm_bindgen::prelude::*;

fn limits() -> Limits {
    Limits { max_bytes: usize::MAX, ..Limits::default() }
}

/// Decodes a document; returns its object count (or throws the error text).
#[wasm_bindgen]
pub fn decode_count(bytes: &[u8]) -> Result<u32, JsError> {
    let doc = decode_document_with(bytes, limits()).map_err(|e| JsError::new(&e.to_string()))?;
    Ok(doc.items.len() as u32)
}

/// Decodes then encodes a document; returns the encoded length.
#[wasm_bindgen]
pub fn roundtrip_len(bytes: &[u8]) -> Result<u32, JsError> {
    let doc = decode_document_with(bytes, limits()).map_err(|e| JsError::new(&e.to_string()))?;
    let xml = encode_document(&doc).map_err(|e| JsError::new(&e.to_string()))?;
    Ok(xml.len() as u32)
}
