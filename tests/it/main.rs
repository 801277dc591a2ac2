//! Integration tests: the real `sluice` binary against real git repositories
//! made in temp dirs. One test binary, a module per command (as uv does).

mod allow;
mod cli;
mod corpus;
mod crds;
mod dashboard;
mod diff;
mod digest;
mod drift;
mod enforce;
mod eval;
mod faults;
mod fetch;
mod gate;
mod gateway;
mod hostile;
mod init;
mod litellm;
mod man;
mod metrics;
mod output;
mod parts;
mod pin;
mod plan;
mod promote;
mod reconcile;
mod render;
mod rollback;
mod schema;
mod server;
mod server_cli;
mod support;
mod validate;
mod verify;
