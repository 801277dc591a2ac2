//! The reference gateway and the http driver, as separate processes on 127.0.0.1.
