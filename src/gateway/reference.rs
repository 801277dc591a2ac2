//! The reference gateway (`sluice gateway`).
