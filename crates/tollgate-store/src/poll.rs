//! The shape the store's background loops share: a pass every so often until shutdown.

use std::future::Future;
use std::time::Duration;

use tokio::time::MissedTickBehavior;

/// A background loop's work: one pass, and what to log about its result.
pub(crate) trait Poll {
    type Output;

    /// One pass. Dropped midway at shutdown, so it must leave its state consistent when it is.
    fn pass(&mut self) -> impl Future<Output = Self::Output> + Send;

    /// Logs a pass's result as the loop wants (every error, or once per failure streak).
    fn report(&mut self, result: Self::Output);
}

/// Runs `poll` every `every` until `shutdown` resolves. After a slow pass or a stall it runs once
/// and carries on rather than firing a burst. A pass against an unreachable database can take a
/// while to fail, so shutdown does not wait for it.
pub(crate) async fn run_every(
    every: Duration,
    shutdown: impl Future<Output = ()>,
    mut poll: impl Poll,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = ticker.tick() => {}
        }
        let result = tokio::select! {
            () = &mut shutdown => break,
            result = poll.pass() => result,
        };
        poll.report(result);
    }
}
