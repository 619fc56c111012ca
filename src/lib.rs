//! The `nodo` binary's library half: configuration and its layering, the
//! wiring of the parts into one node, and the node's HTTP surface. `main.rs`
//! is the CLI over it; tests start whole nodes through [`serve::run`].
//!
//! # Layout
//!
//! - [`config`]: every configuration key; [`settings`] layers defaults <
//!   `config.toml` < environment < flags.
//! - [`node`]: builds the services in dependency order (store, push,
//!   webhooks, calls, chat) from a configuration and the media sockets.
//! - [`http`]: one router over the LiveKit routes (nodo-signaling), the app
//!   routes (nodo-app), the chat socket, the web demo, health and metrics.
//! - [`serve`]: binds the listeners and runs until a shutdown signal.

pub mod bus;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod http;
pub mod metrics;
pub mod node;
pub mod pgbus;
pub mod run;
pub mod serve;
pub mod settings;
pub mod stun;
pub mod tls;
pub mod turn;
mod web;

pub use config::Config;
