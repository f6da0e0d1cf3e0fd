//! Health engine: per-device and per-link state machines, rules, flap detection.
