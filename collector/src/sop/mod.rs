//! The SOP disposition chain: the SOP file, the business calendar, the workflow and its records.
