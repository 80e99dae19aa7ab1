//! Every stream translator, fed arbitrary bytes whole and split at fuzzed points: it must
//! never panic, and what it writes must not depend on how the bytes were split (the network
//! splits them anywhere).
#![no_main]

use johi_core::model::Protocol;
use johi_providers::codec;
use libfuzzer_sys::fuzz_target;

fn run(protocol: Protocol, chunks: &[&[u8]]) -> (Vec<u8>, Option<johi_core::Usage>) {
    let mut out = Vec::new();
    let Some(mut t) = codec::stream_translator(protocol, "m", 1, true) else {
        return (out, None);
    };
    for chunk in chunks {
        out.extend(t.feed(chunk));
    }
    out.extend(t.finish());
    (out, t.usage())
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    // The first two bytes choose the chunk size; the rest is the stream.
    let size = usize::from(u16::from_le_bytes([data[0], data[1]])) % 97 + 1;
    let body = &data[2..];
    let pieces: Vec<&[u8]> = body.chunks(size).collect();
    for protocol in Protocol::ALL {
        let whole = run(protocol, &[body]);
        let split = run(protocol, &pieces);
        assert_eq!(whole, split, "{protocol:?}: output depends on the chunking");
    }
});
