//! The Tasklane binary's library: command-line parsing, role wiring and the import client.
//! Kept as a library so integration tests can start the application in-process.

pub mod app;
pub mod cli;
pub mod hub_access;
pub mod hub_backend;
pub mod hub_cluster;
pub mod hub_feed;
pub mod hub_history;
pub mod import_client;
pub mod presence;
pub mod probes;
pub mod roles;
pub mod token_keys;
