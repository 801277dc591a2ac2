//! The ledger in an embedded SQLite file.

pub struct SqliteLedger {}
