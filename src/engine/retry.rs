//! The shard's side of failover: starting a record when a dispatched INVITE leaves, deciding
//! for each reply to it whether to relay it or absorb it (ACKing a failed try and sending the
//! request to the next candidate), and acting on tries that timed out. The records and
//! policies are [`super::failover`]'s; this file only wires them to the shard's tracker,
//! destination table and outbox.

use super::*;
use crate::dispatch::{Set, flags};
use crate::engine::failover::{Failover, MAX_TRIES, Mark, Policy, Record};
use crate::health::{Cause, Change};
use crate::sip::ack::write_ack;
use crate::sip::proxy::{RequestPlan, branch_hash, plan_request};
use crate::sip::{Scanned, scan};

/// Timed-out tries handled per tick at most (the rest wait for the next tick).
const TIMEOUTS_PER_TICK: usize = 64;

impl Ctx<'_> {
    /// Keeps a record for an initial INVITE that is about to leave on its first try.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_failover(
        &self,
        failover: &mut Failover,
        route: usize,
        policy: &Policy,
        set: &Set,
        cands: &Candidates,
        m: &Message<'_>,
        src: SocketAddr,
        record_route: bool,
    ) {
        let n = cands.len().min(policy.max_tries).min(MAX_TRIES);
        let mut list = [0u16; MAX_TRIES];
        for (slot, &c) in list.iter_mut().zip(cands.as_slice()).take(n) {
            *slot = c;
        }
        let rec = Record::new(
            call_key(m.call_id()),
            route as u16,
            set.id,
            &list[..n],
            branch_hash(m),
            self.now_ms + policy.timeout_ms,
            self.now_ms,
            record_route,
            src,
        );
        if failover.start(rec, m.wire()).is_err() {
            Counters::inc(&self.counters.failover_untracked);
        }
    }

    /// Handles a reply to an INVITE under failover. `true` if it was absorbed here; `false`
    /// when it must be relayed as usual.
    pub(super) fn failover_reply(
        &self,
        fo: &mut FailoverState<'_>,
        tracker: &mut Tracker,
        m: &Message<'_>,
        code: u16,
        out: &mut impl Outbox,
    ) -> bool {
        let key = call_key(m.call_id());
        let Some(rec) = fo.records.get(key).copied() else {
            return false;
        };
        let Some(k) = m
            .via
            .branch
            .and_then(|b| fo.records.try_of(key, b.of(m.buf)))
        else {
            return false;
        };
        let table = self.table;
        let Some(set) = table.set(rec.set) else {
            return false;
        };
        if k != rec.at {
            // An earlier try answering late: a 2xx still makes the call; anything else ends
            // that try here.
            if code >= 300 {
                self.ack(fo.records, &rec, k, set, m, out);
            }
            return (100..200).contains(&code) || code >= 300;
        }
        if code < 200 {
            fo.records.provisional(key, self.now_ms);
            return false;
        }
        let policy = self.policy(&rec);
        let next = policy.filter(|p| !rec.cancelled && code >= 300 && p.retries_on(code));
        match next.and_then(|p| next_try(&rec, set, p)) {
            Some(j) => {
                self.ack(fo.records, &rec, k, set, m, out);
                self.mark(fo.changes, policy, &rec, set, code);
                self.retry(fo.records, tracker, &rec, j, set, out);
                true
            }
            None => {
                fo.records.remove(key);
                false
            }
        }
    }

    /// Acts on tries that got no provisional reply in time: the next candidate, or a 408 to
    /// the upstream when none is left.
    pub(super) fn failover_timeouts(
        &self,
        fo: &mut FailoverState<'_>,
        tracker: &mut Tracker,
        out: &mut impl Outbox,
    ) {
        let mut due = [0u64; TIMEOUTS_PER_TICK];
        let mut n = 0;
        fo.records.expired(self.now_ms, |k| {
            if n < due.len() {
                due[n] = k;
                n += 1;
            }
        });
        let table = self.table;
        for &key in &due[..n] {
            let Some(rec) = fo.records.get(key).copied() else {
                continue;
            };
            let policy = self.policy(&rec);
            let set = table.set(rec.set);
            if let (Some(p), Some(set)) = (policy, set) {
                self.mark(fo.changes, policy, &rec, set, 408);
                if let Some(j) = next_try(&rec, set, p) {
                    self.retry(fo.records, tracker, &rec, j, set, out);
                    continue;
                }
            }
            if let Some(req) = fo.records.request(key) {
                self.reply(req, 408, "Request Timeout", Extra::None, rec.src, out);
            }
            fo.records.remove(key);
            self.release(tracker, key);
        }
    }

    fn policy(&self, rec: &Record) -> Option<&Policy> {
        self.shared
            .routes
            .get(usize::from(rec.route))
            .and_then(|r| r.failover.as_ref())
    }

    /// Sends the stored request to candidate `j` as a new try, and moves the call there.
    fn retry(
        &self,
        records: &mut Failover,
        tracker: &mut Tracker,
        rec: &Record,
        j: u8,
        set: &Set,
        out: &mut impl Outbox,
    ) {
        let Some(dest) = rec.cand(j).and_then(|c| set.dests.get(c)) else {
            return;
        };
        let sent = records.request(rec.key).and_then(|req| match scan(req) {
            Ok(Scanned::Message(m)) => match plan_request(&m, &self.shared.identity) {
                RequestPlan::Forward(f) => {
                    let f = Forward { fork: j, ..f };
                    self.send_to(&m, &f, rec.record_route, rec.src, dest, out);
                    Some(())
                }
                _ => None,
            },
            _ => None,
        });
        if sent.is_none() {
            records.remove(rec.key);
            return;
        }
        Counters::inc(&self.counters.failovers);
        if let Some(r) = records.get_mut(rec.key) {
            r.at = j;
            r.deadline_ms = self.policy(rec).map_or(0, |p| self.now_ms + p.timeout_ms);
        }
        if let Some(e) = tracker.lookup(rec.key, self.now_ms) {
            tracker.retarget(rec.key, dest.id, j);
            if e.counted {
                let table = self.table;
                if let Some(old) = table.dest(e.dest) {
                    old.state.dec_load();
                }
                dest.state.inc_load();
            }
        }
    }

    /// ACKs a final non-2xx reply to try `k` that is not relayed upstream.
    fn ack(
        &self,
        records: &Failover,
        rec: &Record,
        k: u8,
        set: &Set,
        reply: &Message<'_>,
        out: &mut impl Outbox,
    ) {
        let Some(to) = rec
            .cand(k)
            .and_then(|c| set.dests.get(c))
            .and_then(|d| d.addr)
        else {
            return;
        };
        let Some(Ok(Scanned::Message(invite))) = records.request(rec.key).map(scan) else {
            return;
        };
        let popped = match plan_request(&invite, &self.shared.identity) {
            RequestPlan::Forward(f) if f.pop_route => 1,
            _ => 0,
        };
        let Some(buf) = out.buffer() else {
            return self.counters.dropped(Dropped::TxFull);
        };
        match write_ack(&invite, popped, reply, &self.shared.identity, buf) {
            Some(Ok(n)) => out.commit(n, to),
            Some(Err(_)) => self.counters.dropped(Dropped::Overflow),
            None => {}
        }
    }

    /// Marks the destination of the failed try as the route's policy asks, and reports it.
    fn mark(
        &self,
        changes: Option<&Sender<Change>>,
        policy: Option<&Policy>,
        rec: &Record,
        set: &Set,
        code: u16,
    ) {
        let Some(d) = rec.cand(rec.at).and_then(|c| set.dests.get(c)) else {
            return;
        };
        let set_bits = match policy.map(|p| p.mark) {
            Some(Mark::Inactive) => flags::INACTIVE | flags::PROBING,
            Some(Mark::Trying) => flags::TRYING | flags::PROBING,
            _ => return,
        };
        let apply = |f: u8| {
            let next = (f & !(flags::TRYING | flags::INACTIVE)) | set_bits;
            (f & flags::DISABLED == 0 && next != f).then_some(next)
        };
        if let Ok(old) = d.state.flags.fetch_update(Relaxed, Relaxed, apply)
            && let Some(tx) = changes
        {
            let new = apply(old).unwrap_or(old);
            let _ = tx.send(Change::new(d, old, new, code, Cause::Failover));
        }
    }
}

/// What failover handling borrows from the shard.
pub(super) struct FailoverState<'s> {
    pub records: &'s mut Failover,
    pub changes: Option<&'s Sender<Change>>,
}

/// The next try for a call: the next candidate in its list that is still selectable, within
/// the policy's number of tries.
fn next_try(rec: &Record, set: &Set, policy: &Policy) -> Option<u8> {
    (rec.at + 1..rec.ncands)
        .take_while(|&j| usize::from(j) < policy.max_tries)
        .find(|&j| {
            rec.cand(j)
                .and_then(|c| set.dests.get(c))
                .is_some_and(|d| d.state.is_usable() && d.addr.is_some())
        })
}

#[cfg(test)]
#[path = "retry_tests.rs"]
mod tests;
