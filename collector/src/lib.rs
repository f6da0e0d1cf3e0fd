//! Siaga collector library.
#![forbid(unsafe_code)]
