//! Black-box test crate: the tests in `tests/` start the real `strata` binary.
