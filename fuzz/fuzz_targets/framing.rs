//! Fuzzes the server's WebSocket framing (`etp_driver::ws::WsStream`) against
//! tungstenite's on the same client bytes; the checks live in
//! `etp_driver::__fuzz::framing`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    etp_driver::__fuzz::framing(data);
});
