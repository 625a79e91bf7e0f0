//! Receipt intake: what the coordinator does with the viewer receipts a node or a viewer
//! posts, independent of HTTP.

pub(crate) mod receipts;
