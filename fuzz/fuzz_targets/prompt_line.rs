//! Any bytes as a line typed at psgate's prompt: parsing, the remote pipeline it would become, completion and
//! evaluation (bounded) never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    psgate_lang::fuzzing::prompt_line(data);
});
