//! Fuzzes `Session` with arbitrary sequences of inputs, commands and clock advances
//! against a model of the ack table; the checks live in `etp_proto::__fuzz::session`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    etp_proto::__fuzz::session(data);
});
