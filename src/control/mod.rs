//! rvsd's control API (docs/API.md): HTTP + JSON on a Unix socket (and
//! optionally TCP with a bearer token), served by the management thread.
//!
//! - [`api`]: the requests themselves ([`api::Control`]): rvsadm commands
//!   against the running configuration, the model as JSON, reloads.
//! - [`convert`]: running [`crate::config::Config`] ⇄ rvsadm's
//!   [`crate::adm::Model`], validated by the configuration's own rules.
//! - [`live`]: the workers' counters summed, rates, `-Z`.
//! - [`render`]: a `Config` back to the file's TOML.
//! - [`auth`]: the TCP listener's token.
//! - [`client`]: the HTTP client rvsadm uses.
//! - [`server`]: the sockets (`tiny_http`).

pub mod api;
pub mod auth;
pub mod client;
pub mod convert;
pub mod live;
pub mod render;
pub mod server;

pub use api::Control;
pub use server::Endpoints;
