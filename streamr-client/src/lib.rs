//! # streamr-client
//!
//! What a friend node, a player or a tool needs to talk to a StreamrP2P coordinator, without
//! the coordinator itself (no database drivers, no HTTP server):
//!
//! - [`wire`]: every request and response body of the coordinator's HTTP API. They are the
//!   API's own types; the coordinator maps its storage rows to them.
//! - [`client`]: [`CoordinatorClient`], one typed method per endpoint, and one error type,
//!   [`ClientError`], that names the request, the status and the coordinator's JSON error.
//! - [`grant_token`]: the `?grant=<token>` form of a signed session grant that plain players
//!   carry on their URLs.
//! - [`viewer`] (feature `viewer`, on by default): the verifying viewer. It asks the
//!   coordinator for a node, plays the stream's HLS from it, checks every segment against the
//!   origin's hashes, signs receipts for the verified bytes and fails over to another node.
//!
//! The `openapi` feature derives `utoipa::ToSchema` on the wire types, for the coordinator's
//! API document.
//!
//! ```no_run
//! use streamr_client::{ClientError, CoordinatorClient};
//! use streamr_core::KeyPair;
//!
//! # async fn run() -> Result<(), ClientError> {
//! let coordinator = CoordinatorClient::new("http://127.0.0.1:8090")?;
//! let viewer = KeyPair::generate(&mut rand::rngs::OsRng);
//! let play = coordinator.play("show", &viewer.viewer_key()).await?;
//! println!("node {} serves {}", play.node_id, play.hls_url);
//! for segment in coordinator.segments("show", 3).await? {
//!     println!("segment {} has hash {}", segment.sequence, segment.hash);
//! }
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod client;
pub use streamr_core::grant_token;
#[cfg(feature = "openapi")]
pub mod openapi;
#[cfg(feature = "viewer")]
pub mod viewer;
pub mod wire;

pub use client::{
    unix_ms, ClientError, CoordinatorClient, ErrorBody, NodeAdvert, PartReportStream,
    PublishVerdict, StreamedPage,
};
