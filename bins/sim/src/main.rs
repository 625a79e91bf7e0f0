//! `streamr-sim`: the StreamrP2P network simulator.
fn main() {}
