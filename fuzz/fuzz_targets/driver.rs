//! Fuzzes the connection driver: arbitrary sequences of WebSocket messages, server
//! emits and requests, clock advances, stalls, closes and shutdowns run through one
//! server connection over an in-memory WebSocket; the checks live in
//! `etp_driver::__fuzz::driver`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    etp_driver::__fuzz::driver(data);
});
