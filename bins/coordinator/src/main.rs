//! `streamr-coordinator`: the StreamrP2P reference coordinator.
fn main() {}
