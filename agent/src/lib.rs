//! Siaga agent library.
#![forbid(unsafe_code)]
