//! `GET /dashboard/viewers/{viewer_key}`: what the coordinator credited to one viewer key's
//! recent sessions, so a viewer (and the player page) can see its receipts arrived.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use streamr_core::ViewerKey;

use super::overview::recent_receipts;
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::state::Shared;

/// How far back a viewer's sessions are looked up.
const VIEWER_LOOKBACK_MS: i64 = 10 * 60_000;

/// One viewer's recent sessions.
#[derive(Debug, Serialize)]
pub(crate) struct ViewerSummary {
    viewer: ViewerKey,
    sessions: Vec<ViewerSession>,
}

/// A session and the receipts the coordinator accepted for it.
#[derive(Debug, Default, Serialize)]
pub(crate) struct ViewerSession {
    session_id: String,
    stream_id: String,
    node_id: String,
    /// Accepted receipts.
    receipts: u64,
    /// Bytes acknowledged by the newest accepted receipt.
    bytes_total: i64,
    /// Origin segment the newest accepted receipt reached.
    last_segment_seq: i64,
    /// When the newest accepted receipt arrived.
    last_received_ms: i64,
}

/// Sessions granted to `viewer` with receipts accepted in the last ten minutes.
pub(crate) async fn summary(
    State(state): State<Shared>,
    ApiPath(viewer): ApiPath<ViewerKey>,
) -> Result<Json<ViewerSummary>, ApiError> {
    let now = now_ms();
    let receipts = recent_receipts(&state, now - VIEWER_LOOKBACK_MS, now).await?;
    let wanted = viewer.to_string();
    let mut by_session: BTreeMap<String, ViewerSession> = BTreeMap::new();
    let mut viewer_of: BTreeMap<String, bool> = BTreeMap::new();
    for receipt in receipts {
        let mine = match viewer_of.get(&receipt.session_id) {
            Some(mine) => *mine,
            None => {
                let mine = state
                    .storage
                    .get_session(&receipt.session_id)
                    .await?
                    .is_some_and(|s| s.viewer == wanted);
                viewer_of.insert(receipt.session_id.clone(), mine);
                mine
            }
        };
        if !mine {
            continue;
        }
        let session = by_session
            .entry(receipt.session_id.clone())
            .or_insert_with(|| ViewerSession {
                session_id: receipt.session_id.clone(),
                stream_id: receipt.stream_id.clone(),
                node_id: receipt.node_id.clone(),
                ..ViewerSession::default()
            });
        session.receipts += 1;
        if receipt.bytes_total >= session.bytes_total {
            session.bytes_total = receipt.bytes_total;
            session.last_segment_seq = receipt.last_segment_seq;
        }
        session.last_received_ms = session.last_received_ms.max(receipt.received_at_ms);
    }
    Ok(Json(ViewerSummary {
        viewer,
        sessions: by_session.into_values().collect(),
    }))
}
