//! The engine's clock: due retransmissions (SIPp's T1 doubling, T2 cap, 5/9 attempts, then
//! the call fails and is aborted), pauses, timewaits and receive timeouts (`ontimeout`, or
//! the call fails and is aborted), and the end of dead-call memories.

use std::time::Instant;

use super::call::Wake;
use super::engine::{Engine, Net};
use super::scenario::Kind;
use super::stats;

impl Engine {
    /// Fires due timers: retransmissions, pauses, timewaits, receive timeouts; drops expired
    /// dead-call memories.
    pub fn on_timers(&mut self, now: Instant, net: &mut impl Net) {
        let mut due = std::mem::take(&mut self.due);
        self.timers.expire(now, &mut due);
        for &(slot, generation) in &due {
            if self.gens[slot] != generation {
                continue;
            }
            let Some(call) = self.calls[slot].as_mut() else {
                continue;
            };
            if let Some(r) = call.retrans.as_mut()
                && r.at <= now
            {
                let max = if r.invite {
                    self.env.max_invite_retrans
                } else {
                    self.env.max_non_invite_retrans
                };
                if r.count >= max {
                    if let Some(i) = call.last_send_idx {
                        self.stats.step(i).timeouts += 1;
                    }
                    self.abort(slot, now, net);
                    self.end_call(slot, now, Some(stats::MAX_UDP_RETRANS));
                    continue;
                }
                r.count += 1;
                r.interval *= 2;
                if !r.invite {
                    r.interval = r.interval.min(self.env.t2);
                }
                r.at = now + r.interval;
                let at = r.at;
                net.send(call.peer, &call.last_sent);
                self.stats.count(|c| c.retransmissions += 1);
                if let Some(i) = call.last_send_idx {
                    self.stats.step(i).retrans += 1;
                }
                self.arm(slot, at);
            }
            let Some(call) = self.calls[slot].as_mut() else {
                continue;
            };
            if let Some((t, kind)) = call.wake
                && t <= now
            {
                call.wake = None;
                let idx = call.idx;
                match kind {
                    Wake::Pause => {
                        self.step_done(slot, idx, now);
                        self.go_to(slot, idx, None);
                        self.advance(slot, now, net);
                    }
                    Wake::Timewait => {
                        let f = call.action_failure;
                        self.end_call(slot, now, f);
                    }
                    Wake::RecvTimeout => {
                        self.stats.step(idx).timeouts += 1;
                        let ontimeout = match &self.sc.steps[idx].kind {
                            Kind::Recv { ontimeout, .. } => *ontimeout,
                            _ => None,
                        };
                        match ontimeout {
                            Some(label) => {
                                call.idx = label;
                                self.advance(slot, now, net);
                            }
                            None => {
                                self.abort(slot, now, net);
                                self.end_call(slot, now, Some(stats::TIMEOUT_ON_RECV));
                            }
                        }
                    }
                }
            }
        }
        due.clear();
        self.due = due;
        while let Some((t, _)) = self.dead_order.front() {
            if *t > now {
                break;
            }
            if let Some((_, id)) = self.dead_order.pop_front() {
                self.dead.remove(&id);
            }
        }
    }
}
