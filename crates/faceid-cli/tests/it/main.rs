//! The `faceid` binary end to end, in one test binary.

mod generate;
mod hub;
mod load_redis;
mod plus;
mod scale_out;
mod serve;
mod worker;
