//! Fuzzes `Frame::parse` against the naive grammar oracle and the encode/parse round
//! trip; the checks live in `etp_proto::__fuzz::frame_parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    etp_proto::__fuzz::frame_parse(data);
});
