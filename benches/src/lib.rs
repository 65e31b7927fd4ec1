//! Benchmarks of etp. The criterion micro-benchmarks of the core live in `benches/`;
//! run them with `cargo bench -p etp-benches`.
