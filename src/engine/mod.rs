//! The sans-I/O core of a shard: what happens to one datagram between the socket and the
//! socket (scan → route → rewrite), the counters it keeps, and the outbox it writes to. The
//! I/O layer calls in; nothing here opens a socket or reads a clock.

pub mod counters;
pub mod failover;
pub mod flood;
pub mod outbox;
pub mod route;
pub mod shard;
pub mod trust;

pub use counters::{Counters, Snapshot};
pub use outbox::{Outbox, Unsent, VecOutbox};
pub use shard::{Shard, Shared, owner};
