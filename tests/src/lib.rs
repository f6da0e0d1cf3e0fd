//! The Siaga test lab.
