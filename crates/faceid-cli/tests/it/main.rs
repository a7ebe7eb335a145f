//! The `faceid` binary end to end, in one test binary.

mod generate;
mod hub;
mod plus;
mod scale_out;
mod serve;
mod worker;
