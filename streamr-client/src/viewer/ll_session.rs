//! Playing a node's LL-HLS rendition part by part: blocking playlist reloads for the next part,
//! the preload-hinted part requested ahead (the node holds the request until the part exists),
//! every part checked against the hash the origin reported as it cut it before it is written to
//! the output (a part the origin did not report in time is not output and the node is given
//! up), and, once all parts of a segment are in, the segment checked against its fMP4 hash and
//! chained into the receipts like a whole segment.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use reqwest::Url;
use streamr_core::{segment_hash, ContentDigest, NodeId};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::ll::{blocking_reload_url, LlMediaPlaylist, PartPosition};
use super::origin::OriginPart;
use super::part_order::OriginPlace;
use super::part_reports::{reports_url, NodeReports, Served};
use super::receipts::SessionReceipts;
use super::resume::{self, ResumePlan, PART_RESUME_LOOKBACK};
use super::{low_latency_url, with_token, Pending, Run, SessionClock, SessionEnd, ViewerError};
use crate::grant_token;
use crate::wire::PlayResponse;

/// A part checked and written to the output, waiting for its segment's report (which chains it
/// into the receipts).
struct PendingPart {
    node: NodeId,
    /// The media sequence number of its segment at the origin, when a part report said.
    origin_msn: Option<i64>,
    /// Where the node listed it.
    position: PartPosition,
    hash: ContentDigest,
    bytes: Bytes,
    received: Instant,
    received_ms: u64,
}

/// Verified parts of origin segments not complete yet, by origin sequence: each part's bytes by
/// index, and when the first arrived.
type Assemblies = BTreeMap<u64, (Vec<Option<Bytes>>, Instant, u64)>;

/// Origin segments whose parts are still being collected; older ones are forgotten (a viewer
/// that joined in the middle of a segment never completes it).
const ASSEMBLING: u64 = 3;

/// A part waiting for its segment report refreshes the origin's segment hashes at least this
/// often, even while the part reports say its segment is still being cut.
const SEGMENT_REFRESH_BACKSTOP: Duration = Duration::from_secs(5);

/// One LL-HLS session's verification state.
#[derive(Default)]
struct PartChecks {
    parts: VecDeque<PendingPart>,
    assemblies: Assemblies,
    /// The newest origin part verified.
    newest: Option<OriginPart>,
}

/// How `part` follows `newest` (the newest verified before): origin parts missed in between,
/// or `None` when it is not after it (played twice). Gaps of more than a segment are left to
/// the segment counters.
fn parts_between(newest: Option<OriginPart>, part: OriginPart) -> Option<u64> {
    let Some(newest) = newest else {
        return Some(0);
    };
    let (at, before) = ((part.sequence, part.index), (newest.sequence, newest.index));
    if at <= before {
        return None;
    }
    let missed = if part.sequence == newest.sequence {
        part.index.saturating_sub(newest.index).saturating_sub(1)
    } else if Some(part.sequence) == newest.sequence.checked_add(1) {
        newest
            .count
            .saturating_sub(newest.index)
            .saturating_sub(1)
            .saturating_add(part.index)
    } else {
        0
    };
    Some(u64::try_from(missed).unwrap_or(u64::MAX))
}

impl Run {
    /// Plays the LL-HLS rendition from the node `play` names, part by part, until it fails,
    /// the stream ends or the viewer stops.
    pub(super) async fn ll_session(
        &mut self,
        play: &PlayResponse,
        failed_at: Option<Instant>,
    ) -> Result<SessionEnd, ViewerError> {
        let playlist_url = match Url::parse(&grant_token::with_grant(&play.hls_url, &play.grant)) {
            Ok(url) => low_latency_url(url),
            Err(error) => return Ok(SessionEnd::NodeFailed(format!("bad HLS URL: {error}"))),
        };
        let token = grant_token::encode(&play.grant);
        self.node_reports = self.follow_node_reports(play).await;
        let mut receipts = SessionReceipts::new(play.grant.body.session_id);
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let mut checks = PartChecks::default();
        let mut cursor: Option<PartPosition> = None;
        let mut clock = SessionClock::new();
        let mut last_progress: Option<Instant> = None;
        let end = loop {
            let url = match cursor {
                Some(next) => blocking_reload_url(&playlist_url, next),
                None => playlist_url.clone(),
            };
            let fetched = tokio::select! {
                _ = self.stop.cancelled() => break SessionEnd::Stopped,
                fetched = self.fetch_ll_playlist(&url) => fetched,
            };
            let mut failure = None;
            let mut ended = false;
            match fetched {
                Ok(Some(playlist)) => {
                    let step = self
                        .play_parts(
                            play.node_id,
                            &playlist,
                            &playlist_url,
                            &token,
                            cursor,
                            &mut checks,
                            failed_at,
                            &mut last_progress,
                        )
                        .await?;
                    match step {
                        Ok(next) => cursor = next,
                        Err(reason) => failure = Some(reason),
                    }
                    ended = playlist.ended;
                    if cursor.is_none() && failure.is_none() && !ended {
                        // Nothing to play yet: no blocking request to make either.
                        tokio::select! {
                            _ = self.stop.cancelled() => break SessionEnd::Stopped,
                            _ = tokio::time::sleep(self.config.poll_interval) => {}
                        }
                    }
                }
                Ok(None) => {
                    // No part yet (or not within the node's hold): ask again shortly.
                    tokio::select! {
                        _ = self.stop.cancelled() => break SessionEnd::Stopped,
                        _ = tokio::time::sleep(self.config.poll_interval) => {}
                    }
                }
                Err(reason) => failure = Some(reason),
            }
            if let Err(reason) = self.verify_parts(&mut checks, &mut pending, false).await {
                failure.get_or_insert(reason);
            }
            self.verify_pending(&mut pending, &mut receipts, false)
                .await;
            if self.stop.is_cancelled() {
                // Asked to stop while a part was being fetched or checked: not the node's fault.
                break SessionEnd::Stopped;
            }
            if let Some(reason) = failure {
                break SessionEnd::NodeFailed(reason);
            }
            if ended {
                // A node shutting down ends its playlists too: the stream ended only when the
                // coordinator no longer has it live.
                match self.coordinator.stream(&self.config.stream_id).await {
                    Ok(stream) if stream.status == "live" => {
                        break SessionEnd::NodeFailed("the node ended a live stream".into());
                    }
                    _ => break SessionEnd::StreamEnded,
                }
            }
            if self
                .end_round(play, &mut receipts, &mut clock, last_progress)
                .await
            {
                break SessionEnd::NodeFailed("no new part".into());
            }
        };
        if !matches!(end, SessionEnd::NodeFailed(_)) {
            // A part that does not match cannot fail over any more: it is counted.
            let _ = self.verify_parts(&mut checks, &mut pending, true).await;
        }
        self.end_session(play, &end, &mut pending, &mut receipts)
            .await;
        self.node_reports = None;
        Ok(end)
    }

    /// Starts following the origin's part reports the node `play` names passes on (see
    /// [`NodeReports`]), once the origin's key is known from the coordinator's stream record;
    /// `None` when the coordinator names no origin (parts are then looked up there).
    async fn follow_node_reports(&mut self, play: &PlayResponse) -> Option<NodeReports> {
        if self.origin_node.is_none() {
            match self.coordinator.stream(&self.config.stream_id).await {
                Ok(stream) => {
                    self.origin_node = Some(stream.origin_node.and_then(|id| id.parse().ok()));
                }
                Err(error) => {
                    tracing::debug!(%error, "the stream's origin is not known (yet)");
                    return None;
                }
            }
        }
        let origin = self.origin_node.flatten()?;
        let stream = streamr_core::StreamId::new(&self.config.stream_id).ok()?;
        let hls = Url::parse(&grant_token::with_grant(&play.hls_url, &play.grant)).ok()?;
        let url = reports_url(&hls)?;
        let stats = self.stats.clone();
        Some(NodeReports::follow(
            self.http.clone(),
            url,
            origin,
            stream,
            move |_| stats.send_modify(|s| s.part_reports_refused += 1),
        ))
    }

    /// Fetches and outputs the parts of `playlist` from `cursor` on (on a node's first playlist,
    /// from where a joining or resuming viewer starts), then the preload-hinted part when it is
    /// the next one. The outer `Err` is the output failing; the inner one the node failing.
    /// Returns the part to ask for next.
    #[allow(clippy::too_many_arguments)]
    async fn play_parts(
        &mut self,
        node: NodeId,
        playlist: &LlMediaPlaylist,
        playlist_url: &Url,
        token: &str,
        cursor: Option<PartPosition>,
        checks: &mut PartChecks,
        failed_at: Option<Instant>,
        last_progress: &mut Option<Instant>,
    ) -> Result<Result<Option<PartPosition>, String>, ViewerError> {
        if let Some(uri) = &playlist.map_uri {
            if let Err(reason) = self.write_init(playlist_url, uri, token).await {
                return Ok(Err(reason));
            }
        }
        let mut next = match cursor {
            Some(next) => playlist.normalise(next),
            None if !self.delivered_parts.is_empty() => {
                match self.ll_resume(playlist, playlist_url, token).await {
                    Ok((parts, next)) => {
                        for (position, bytes) in parts {
                            let behind = playlist.listed_after(position);
                            if let Err(reason) = self
                                .deliver_part(
                                    node,
                                    (position, behind),
                                    bytes,
                                    checks,
                                    failed_at,
                                    last_progress,
                                )
                                .await?
                            {
                                return Ok(Err(reason));
                            }
                        }
                        match next {
                            Some(next) => next,
                            None => return Ok(Ok(None)),
                        }
                    }
                    Err(reason) => return Ok(Err(reason)),
                }
            }
            None => match playlist.start() {
                Some(start) => start,
                None => return Ok(Ok(None)),
            },
        };
        if playlist.left_behind(next) {
            // The parts in between left the playlist: carry on at the newest a player can start
            // at (the gap shows in the verified sequence numbers).
            tracing::info!(
                msn = next.msn,
                part = next.index,
                "parts left the playlist before they were fetched"
            );
            match playlist.start() {
                Some(start) => next = start,
                None => return Ok(Ok(None)),
            }
        }
        let listed: Vec<_> = playlist.parts_from(next).cloned().collect();
        let hint = playlist.hint.iter().cloned();
        for part in listed.into_iter().chain(hint) {
            if part.position != next {
                // The hint when it is not the part that comes next, or a gap in the listing.
                if part.position < next {
                    continue;
                }
                if playlist.hint.as_ref() == Some(&part) {
                    break;
                }
            }
            let url = match playlist_url.join(&part.uri) {
                Ok(url) => with_token(url, token),
                Err(error) => return Ok(Err(format!("bad part URI {:?}: {error}", part.uri))),
            };
            match self.fetch(&url).await {
                Ok(Some(bytes)) => {
                    let behind = playlist.listed_after(part.position);
                    if let Err(reason) = self
                        .deliver_part(
                            node,
                            (part.position, behind),
                            bytes,
                            checks,
                            failed_at,
                            last_progress,
                        )
                        .await?
                    {
                        return Ok(Err(reason));
                    }
                    next = playlist.after(part.position);
                }
                // A hinted part that never came (its segment closed first): the next
                // playlist says what comes instead.
                Ok(None) if playlist.hint.as_ref() == Some(&part) => {}
                // Left the node's window already: skip it.
                Ok(None) => next = playlist.after(part.position),
                Err(reason) => return Ok(Err(reason)),
            }
        }
        Ok(Ok(Some(next)))
    }

    /// The parts to deliver first on a node taken over after a fail-over (those after the last
    /// delivered one, found by content among its newest listed parts, oldest first), and the
    /// part to ask for next. When none of them was delivered, nothing is delivered and the
    /// viewer starts where a joining viewer would. `Err` when the node does not answer.
    async fn ll_resume(
        &mut self,
        playlist: &LlMediaPlaylist,
        playlist_url: &Url,
        token: &str,
    ) -> Result<(Vec<(PartPosition, Bytes)>, Option<PartPosition>), String> {
        let mut fetched: Vec<(ContentDigest, PartPosition, Bytes)> = Vec::new();
        for part in playlist.parts.iter().rev().take(PART_RESUME_LOOKBACK) {
            let Ok(url) = playlist_url.join(&part.uri) else {
                break;
            };
            let Some(bytes) = self.fetch(&with_token(url, token)).await? else {
                break;
            };
            let hash = segment_hash(&bytes);
            fetched.push((hash, part.position, bytes));
            if self.delivered_parts.contains(&hash) {
                break;
            }
        }
        let hashes: Vec<_> = fetched.iter().map(|(hash, _, _)| *hash).collect();
        match resume::plan(&self.delivered_parts, &hashes) {
            ResumePlan::After(position) => {
                fetched.truncate(position);
                self.stats.send_modify(|s| s.resumes_matched += 1);
                let next = playlist.parts.last().map(|p| playlist.after(p.position));
                let parts = fetched
                    .into_iter()
                    .rev()
                    .map(|(_, position, bytes)| (position, bytes))
                    .collect();
                Ok((parts, next))
            }
            ResumePlan::NewestOnly => {
                tracing::info!(
                    "last delivered part not found on the new node; starting at its newest"
                );
                self.stats.send_modify(|s| s.resumes_unmatched += 1);
                Ok((Vec::new(), playlist.start()))
            }
        }
    }

    /// Checks a received part (where it is and how many parts were listed after it) against
    /// the origin's part hash, then writes it to the output and queues it for its segment's
    /// check. The outer `Err` is the output failing; the inner one the part not being the
    /// origin's (it is not output).
    async fn deliver_part(
        &mut self,
        node: NodeId,
        (position, behind): (PartPosition, u32),
        bytes: Bytes,
        checks: &mut PartChecks,
        failed_at: Option<Instant>,
        last_progress: &mut Option<Instant>,
    ) -> Result<Result<(), String>, ViewerError> {
        let hash = segment_hash(&bytes);
        if self.delivered_parts.contains(&hash) {
            // Played already (a resume skips those): never written twice.
            tracing::debug!(msn = position.msn, part = position.index, %hash,
                "a part already played was served again; not output");
            self.stats.send_modify(|s| s.repeated_parts += 1);
            return Ok(Ok(()));
        }
        let origin_msn = match self.check_part(&hash, position, bytes.len()).await {
            Ok(msn) => msn,
            Err(reason) => return Ok(Err(reason)),
        };
        let now = Instant::now();
        if let Some(failed) = failed_at.filter(|_| last_progress.is_none()) {
            self.stats
                .send_modify(|s| s.last_failover_gap = Some(now - failed));
        }
        *last_progress = Some(now);
        if let Some(output) = self.output.as_mut() {
            output
                .write_all(&bytes)
                .await
                .map_err(ViewerError::Output)?;
            output.flush().await.map_err(ViewerError::Output)?;
        }
        let startup = self.started.elapsed();
        self.stats.send_modify(|s| {
            s.parts += 1;
            s.bytes += bytes.len() as u64;
            s.last_part = Some((position.msn, position.index));
            s.last_part_behind = Some(behind);
            s.startup.get_or_insert(startup);
        });
        self.delivered_parts.record(hash);
        checks.parts.push_back(PendingPart {
            node,
            origin_msn,
            position,
            hash,
            bytes,
            received: now,
            received_ms: crate::client::unix_ms(),
        });
        Ok(Ok(()))
    }

    /// Lets a part through when its origin `place` comes after the last part played; counts it
    /// as unverified and says why when it does not.
    fn admit_place(&mut self, place: OriginPlace, position: PartPosition) -> Result<(), String> {
        self.part_order.admit(place.clone()).map_err(|last| {
            self.stats.send_modify(|s| s.unverified_parts += 1);
            format!(
                "part {}.{} is the origin's part {}.{}, not after the last one played ({}.{}): \
                 an older part served again, or parts out of order",
                position.msn, position.index, place.msn, place.index, last.msn, last.index
            )
        })
    }

    /// Checks that `hash` is the hash of a part the origin reported as it cut it, asking the
    /// coordinator and waiting at most [`super::ViewerConfig::part_verify_timeout`] for the
    /// report; a part listed in a segment report already is known without asking. Its place
    /// at the origin must come after the last part played ([`super::part_order::PartOrder`]). `Err` when the
    /// origin did not report it in time, it is not after the last one, or the coordinator
    /// cannot say.
    async fn check_part(
        &mut self,
        hash: &ContentDigest,
        position: PartPosition,
        len: usize,
    ) -> Result<Option<i64>, String> {
        let started = Instant::now();
        let deadline = started + self.config.part_verify_timeout;
        // The origin's signed reports the node passes on (checked here), waited for briefly;
        // the coordinator is asked only when the node serves none or this one did not come.
        let from_node = match self.node_reports.as_mut() {
            Some(reports) if self.index.find_part(hash).is_none() => {
                let found = tokio::select! {
                    _ = self.stop.cancelled() => return Err("stopped before the part was checked".into()),
                    found = reports.find(hash, deadline) => found,
                };
                Some(found)
            }
            _ => None,
        };
        let coordinator_wait = match &from_node {
            // The node passes reports on but not this part's in time: one last look at the
            // coordinator, without waiting.
            Some(Err(Served::Yes | Served::Unknown)) => Duration::ZERO,
            _ => self.config.part_verify_timeout,
        };
        let mut origin_msn = None;
        let cut_ms = if let Some(Ok(part)) = from_node {
            origin_msn = Some(part.msn);
            let place = OriginPlace {
                run: part.run,
                msn: part.msn,
                index: part.index,
            };
            self.admit_place(place, position)?;
            self.stats.send_modify(|s| s.parts_checked_by_report += 1);
            Some(part.cut_ms)
        } else if let Some(origin) = self.index.find_part(hash) {
            // Segment reports carry no run: the part is placed in the run played last.
            let place = OriginPlace {
                run: self.part_order.run().unwrap_or_default().to_owned(),
                msn: i64::try_from(origin.sequence).unwrap_or(i64::MAX),
                index: i64::try_from(origin.index).unwrap_or(i64::MAX),
            };
            self.admit_place(place, position)?;
            None
        } else {
            let wait = coordinator_wait;
            let asked = tokio::select! {
                _ = self.stop.cancelled() => return Err("stopped before the part was checked".into()),
                asked = self.coordinator.part(&self.config.stream_id, hash, wait) => asked,
            };
            self.stats
                .send_modify(|s| s.parts_checked_by_coordinator += 1);
            match asked {
                Ok(part) => {
                    let place = OriginPlace {
                        run: part.run,
                        msn: part.msn,
                        index: part.index,
                    };
                    self.admit_place(place, position)?;
                    Some(part.cut_ms)
                }
                Err(error) if error.status() == Some(reqwest::StatusCode::NOT_FOUND) => {
                    self.stats.send_modify(|s| s.unverified_parts += 1);
                    return Err(format!(
                        "part {}.{} ({len} bytes, {hash}) was not reported by the origin within {:?}",
                        position.msn, position.index, self.config.part_verify_timeout
                    ));
                }
                Err(error) => {
                    return Err(format!(
                        "part {}.{} cannot be checked: {error}",
                        position.msn, position.index
                    ))
                }
            }
        };
        let waited = started.elapsed();
        let age_ms = cut_ms.map(|cut| {
            i64::try_from(crate::client::unix_ms())
                .unwrap_or(i64::MAX)
                .saturating_sub(cut)
        });
        self.stats.send_modify(|s| {
            s.verified_parts += 1;
            let wait = &mut s.part_check_wait;
            wait.last = Some(waited);
            wait.max = wait.max.max(waited);
            wait.total = wait.total.saturating_add(waited);
            if let Some(age) = age_ms {
                wait.last_cut_to_verified_ms = Some(age);
                wait.max_cut_to_verified_ms =
                    Some(wait.max_cut_to_verified_ms.map_or(age, |max| max.max(age)));
            }
        });
        Ok(origin_msn)
    }

    /// Whether the coordinator may hold the segment report of origin segment `msn` (of a part
    /// waiting for it) by now: the origin reported a part of a later segment (so it closed
    /// this one), or the node passes on no reports to tell, or the index was last refreshed
    /// [`SEGMENT_REFRESH_BACKSTOP`] ago.
    fn segment_report_due(&self, msn: Option<i64>) -> bool {
        let newest = self.node_reports.as_ref().and_then(NodeReports::newest_msn);
        match (msn, newest) {
            (Some(msn), Some(newest)) if newest <= msn => self
                .index_refreshed
                .is_none_or(|at| at.elapsed() >= SEGMENT_REFRESH_BACKSTOP),
            _ => true,
        }
    }

    /// Places output parts in their origin segments (from the segment reports' part lists), in
    /// order; a segment whose parts are all in is checked against its fMP4 hash and queued in
    /// `pending` as a whole segment (for the chain and receipts). A part whose segment the
    /// origin has not reported waits like a segment does (see [`Run::verify_pending`]); one
    /// still not in a segment report once judged (or, with `last`, at once) earns no receipt
    /// and is dropped: it was checked against its part hash before it was played, so it does
    /// not count against the node.
    async fn verify_parts(
        &mut self,
        checks: &mut PartChecks,
        pending: &mut VecDeque<Pending>,
        last: bool,
    ) -> Result<(), String> {
        let mut refreshed = false;
        while let Some(front) = checks.parts.front() {
            let mut found = self.index.find_part(&front.hash);
            if found.is_none() && !refreshed && !self.segment_report_due(front.origin_msn) {
                // Its segment is still being cut at the origin: no report of it to fetch yet.
                refreshed = true;
            }
            if found.is_none() && !refreshed {
                refreshed = true;
                self.index_refreshed = Some(Instant::now());
                match self
                    .index
                    .refresh(&self.coordinator, &self.config.stream_id)
                    .await
                {
                    Ok(()) => found = self.index.find_part(&front.hash),
                    Err(error) => {
                        tracing::debug!(%error, "origin hashes unavailable");
                        if !last {
                            return Ok(());
                        }
                    }
                }
            }
            let Some(origin) = found else {
                let judged = front.received.elapsed() >= self.config.verify_timeout
                    && self.index.reported_since(front.received_ms);
                if !judged && !last {
                    return Ok(());
                }
                if judged {
                    tracing::debug!(msn = front.position.msn, part = front.position.index,
                        hash = %front.hash, "a checked part is in no segment report; no receipt for it");
                }
                checks.parts.pop_front();
                continue;
            };
            let Some(part) = checks.parts.pop_front() else {
                break;
            };
            let follows = parts_between(checks.newest, origin);
            if follows.is_some() {
                checks.newest = Some(origin);
            }
            self.stats.send_modify(|s| match follows {
                Some(missed) => s.skipped_parts = s.skipped_parts.saturating_add(missed),
                None => s.repeated_parts += 1,
            });
            let first_received = (part.received, part.received_ms);
            let (slots, _, _) = checks
                .assemblies
                .entry(origin.sequence)
                .or_insert_with(|| (vec![None; origin.count], first_received.0, first_received.1));
            if let Some(slot) = slots.get_mut(origin.index) {
                slot.get_or_insert(part.bytes);
            }
            let complete = slots.iter().all(Option::is_some);
            if complete {
                if let Some((slots, received, received_ms)) =
                    checks.assemblies.remove(&origin.sequence)
                {
                    let whole: Vec<u8> = slots.into_iter().flatten().flatten().collect();
                    let hash = segment_hash(&whole);
                    if hash != origin.segment_hash {
                        self.stats.send_modify(|s| s.unverified_segments += 1);
                        return Err(format!(
                            "the parts of origin segment {} do not make its fMP4 segment",
                            origin.sequence
                        ));
                    }
                    self.stats.send_modify(|s| s.segments += 1);
                    pending.push_back(Pending {
                        node: part.node,
                        hash,
                        len: whole.len(),
                        received,
                        received_ms,
                    });
                }
            }
            let oldest_kept = origin.sequence.saturating_sub(ASSEMBLING);
            checks
                .assemblies
                .retain(|sequence, _| *sequence >= oldest_kept);
        }
        Ok(())
    }

    /// The LL-HLS playlist at `url` (a blocking reload when it asks for a part). `Ok(None)`
    /// while the node has nothing to list yet (404) or the part did not come within its hold
    /// (503); `Err` when it does not answer.
    async fn fetch_ll_playlist(&self, url: &Url) -> Result<Option<LlMediaPlaylist>, String> {
        let response = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| format!("playlist: {e}"))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND
            || status == reqwest::StatusCode::SERVICE_UNAVAILABLE
        {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(format!("playlist: HTTP {status}"));
        }
        let text = response
            .text()
            .await
            .map_err(|e| format!("playlist: {e}"))?;
        LlMediaPlaylist::parse(&text)
            .map(Some)
            .map_err(|e| format!("playlist: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(sequence: u64, index: usize, count: usize) -> OriginPart {
        OriginPart {
            sequence,
            index,
            count,
            segment_hash: ContentDigest::default(),
        }
    }

    #[test]
    fn consecutive_parts_miss_nothing_within_and_across_segments() {
        assert_eq!(parts_between(None, part(4, 2, 5)), Some(0));
        assert_eq!(parts_between(Some(part(4, 2, 5)), part(4, 3, 5)), Some(0));
        assert_eq!(parts_between(Some(part(4, 4, 5)), part(5, 0, 6)), Some(0));
    }

    #[test]
    fn missed_parts_are_counted_and_repeats_are_told_apart() {
        assert_eq!(parts_between(Some(part(4, 1, 5)), part(4, 3, 5)), Some(1));
        assert_eq!(parts_between(Some(part(4, 3, 5)), part(5, 1, 5)), Some(2));
        assert_eq!(parts_between(Some(part(4, 3, 5)), part(4, 3, 5)), None);
        assert_eq!(parts_between(Some(part(5, 0, 5)), part(4, 4, 5)), None);
    }
}
