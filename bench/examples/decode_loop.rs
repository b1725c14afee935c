//! Decodes one file in a loop, for a profiler: `cargo run --release -p psgate-bench --example decode_loop -- FILE N`.
fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("FILE");
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);
    let text = std::fs::read(path).expect("readable");
    let limits = psgate_shared::clixml::Limits { max_bytes: usize::MAX, ..Default::default() };
    for _ in 0..n {
        let doc = psgate_shared::clixml::decode_document_with(&text, limits).expect("decodes");
        std::hint::black_box(doc);
    }
}
