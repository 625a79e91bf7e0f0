//! `streamr-node`: the StreamrP2P friend node.
fn main() {}
