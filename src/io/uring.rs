//! The io_uring shard loop (multishot receive over a provided buffer ring, batched sends).

use super::{Handler, ShardIo};

pub(crate) fn probe() -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "io_uring backend not built yet",
    ))
}

pub(crate) fn run<H: Handler>(s: ShardIo<H>) {
    super::mmsg::run(s)
}
