//! Bad command lines of `siaga-collector`: exit 64 (EX_USAGE) with a
//! sentence naming the flag and an example of what it takes (the same
//! rules as the `siaga` CLI's, from [`siaga_proto::usage`]).

pub use siaga_proto::usage::{EX_USAGE, parse};
