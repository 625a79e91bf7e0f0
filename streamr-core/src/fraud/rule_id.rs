//! The typed rule id and the names it is stored under.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The rules. The database and the API store a rule as [`RuleId::as_str`]; renaming a variant
/// never changes stored data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RuleId {
    /// The node claims far more bytes than its receipts show.
    ClaimsExceedReceipts,
    /// The node submitted receipts beyond their grant.
    ReceiptsBeyondGrant,
    /// The node submitted forged or replayed receipts.
    ForgedReceipts,
    /// A session acknowledged more than bitrate × duration × headroom.
    OverBitrate,
    /// Probes got wrong content while the node claimed traffic, or most timed out while it
    /// claimed more than its receipts verified and its reachable time could carry.
    ProbeFailuresWhileServing,
    /// Receipts the node handed in show wrong or stale content.
    WrongContent,
    /// Probes pass but the node's viewers get late content.
    QualityGap,
    /// Viewer and node share a /24 or an operator.
    SelfDealing,
    /// A viewer identity with sessions or bytes far above the norm.
    BotViewer,
    /// Too many nodes in one /24: the group's rewards are capped.
    SybilCluster,
    /// A viewer's credited bytes above the per-viewer cap.
    ViewerCap,
    /// A viewer that keeps using one operator's nodes although routing would spread it.
    Collusion,
    /// Too much of the node's traffic came from its own prefix or operator.
    TaintedTraffic,
    /// A new node: reduced weight for the first epochs.
    Probation,
    /// A new node where a recently penalized node was (same /24 or operator).
    Whitewashing,
    /// Credit from a viewer key without history spread over several nodes is discounted.
    NewViewerKey,
    /// Credited bytes of all viewer keys in one source prefix above the per-prefix cap.
    ViewerPrefixCap,
    /// Unattested bytes beyond what the grants issued to the node could carry.
    UnattestedBeyondGrants,
    /// The network's unattested bytes above their allowed ratio to attested bytes.
    UnattestedRatio,
    /// Relay edges into a child credited beyond what its subtree verifiably delivered (or
    /// beyond one stream for the epoch).
    RelayBeyondSubtree,
}

impl RuleId {
    /// Every rule, in declaration order.
    pub const ALL: [RuleId; 20] = [
        RuleId::ClaimsExceedReceipts,
        RuleId::ReceiptsBeyondGrant,
        RuleId::ForgedReceipts,
        RuleId::OverBitrate,
        RuleId::ProbeFailuresWhileServing,
        RuleId::WrongContent,
        RuleId::QualityGap,
        RuleId::SelfDealing,
        RuleId::BotViewer,
        RuleId::SybilCluster,
        RuleId::ViewerCap,
        RuleId::Collusion,
        RuleId::TaintedTraffic,
        RuleId::Probation,
        RuleId::Whitewashing,
        RuleId::NewViewerKey,
        RuleId::ViewerPrefixCap,
        RuleId::UnattestedBeyondGrants,
        RuleId::UnattestedRatio,
        RuleId::RelayBeyondSubtree,
    ];

    /// The stable name stored in the evidence table and shown by the API (equal to the serde
    /// name).
    pub const fn as_str(self) -> &'static str {
        match self {
            RuleId::ClaimsExceedReceipts => "claims_exceed_receipts",
            RuleId::ReceiptsBeyondGrant => "receipts_beyond_grant",
            RuleId::ForgedReceipts => "forged_receipts",
            RuleId::OverBitrate => "over_bitrate",
            RuleId::ProbeFailuresWhileServing => "probe_failures_while_serving",
            RuleId::WrongContent => "wrong_content",
            RuleId::QualityGap => "quality_gap",
            RuleId::SelfDealing => "self_dealing",
            RuleId::BotViewer => "bot_viewer",
            RuleId::SybilCluster => "sybil_cluster",
            RuleId::ViewerCap => "viewer_cap",
            RuleId::Collusion => "collusion",
            RuleId::TaintedTraffic => "tainted_traffic",
            RuleId::Probation => "probation",
            RuleId::Whitewashing => "whitewashing",
            RuleId::NewViewerKey => "new_viewer_key",
            RuleId::ViewerPrefixCap => "viewer_prefix_cap",
            RuleId::UnattestedBeyondGrants => "unattested_beyond_grants",
            RuleId::UnattestedRatio => "unattested_ratio",
            RuleId::RelayBeyondSubtree => "relay_beyond_subtree",
        }
    }

    /// The name a [`crate::PenaltyOrder`] carries in published epoch inputs. Penalty orders have
    /// always named their rule in this form (`ClaimsExceedReceipts`); it is kept so that the
    /// inputs, and the statement hashes over them, stay what they were.
    pub const fn penalty_label(self) -> &'static str {
        match self {
            RuleId::ClaimsExceedReceipts => "ClaimsExceedReceipts",
            RuleId::ReceiptsBeyondGrant => "ReceiptsBeyondGrant",
            RuleId::ForgedReceipts => "ForgedReceipts",
            RuleId::OverBitrate => "OverBitrate",
            RuleId::ProbeFailuresWhileServing => "ProbeFailuresWhileServing",
            RuleId::WrongContent => "WrongContent",
            RuleId::QualityGap => "QualityGap",
            RuleId::SelfDealing => "SelfDealing",
            RuleId::BotViewer => "BotViewer",
            RuleId::SybilCluster => "SybilCluster",
            RuleId::ViewerCap => "ViewerCap",
            RuleId::Collusion => "Collusion",
            RuleId::TaintedTraffic => "TaintedTraffic",
            RuleId::Probation => "Probation",
            RuleId::Whitewashing => "Whitewashing",
            RuleId::NewViewerKey => "NewViewerKey",
            RuleId::ViewerPrefixCap => "ViewerPrefixCap",
            RuleId::UnattestedBeyondGrants => "UnattestedBeyondGrants",
            RuleId::UnattestedRatio => "UnattestedRatio",
            RuleId::RelayBeyondSubtree => "RelayBeyondSubtree",
        }
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule name that is neither a [`RuleId::as_str`] nor a [`RuleId::penalty_label`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown fraud rule {name:?}")]
pub struct UnknownRule {
    /// The name given.
    pub name: String,
}

impl FromStr for RuleId {
    type Err = UnknownRule;

    /// Parses a stored name: the evidence form (`claims_exceed_receipts`) or the penalty-order
    /// form (`ClaimsExceedReceipts`).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        RuleId::ALL
            .into_iter()
            .find(|rule| rule.as_str() == name || rule.penalty_label() == name)
            .ok_or_else(|| UnknownRule {
                name: name.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_round_trip_and_match_serde() {
        for rule in RuleId::ALL {
            let serde_name = serde_json::to_value(rule).unwrap();
            assert_eq!(serde_name.as_str(), Some(rule.as_str()));
            assert_eq!(rule.as_str().parse::<RuleId>(), Ok(rule));
            assert_eq!(rule.penalty_label().parse::<RuleId>(), Ok(rule));
            assert_eq!(rule.penalty_label(), format!("{rule:?}"));
        }
        assert!("no_such_rule".parse::<RuleId>().is_err());
    }

    #[test]
    fn names_already_in_databases_are_unchanged() {
        // Evidence rows and penalty orders written before the rules were split.
        assert_eq!(
            RuleId::ClaimsExceedReceipts.as_str(),
            "claims_exceed_receipts"
        );
        assert_eq!(
            RuleId::ProbeFailuresWhileServing.as_str(),
            "probe_failures_while_serving"
        );
        assert_eq!(RuleId::Probation.as_str(), "probation");
        assert_eq!(RuleId::TaintedTraffic.penalty_label(), "TaintedTraffic");
    }
}
