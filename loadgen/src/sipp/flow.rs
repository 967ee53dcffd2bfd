//! How a call walks its scenario: the steps it runs until it must wait (send, pause, nop,
//! timewait, recv), `condexec`, conditional `next` (`test`, `chance`), and the outcome of a
//! step's actions (failed checks, `jump`, `exec int_cmd`, `error`).

use std::cell::OnceCell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::actions::{self, Cx, unit};
use super::call::{CallValues, Retrans, Wake};
use super::engine::{Engine, Net, values};
use super::scenario::{Kind, Pause, Step};
use super::stats;
use super::vars::{Space, View};
use super::wire::{cseq_is_invite, top_branch};

/// What a step's actions leave for the call.
pub enum After {
    /// Go on (at this index when a `jump` ran).
    Go(Option<usize>),
    /// The actions ended the call.
    Ended,
}

/// The index after step `idx`: its `next` label when there is one, `test` (if any) is set and
/// `chance` (if any) draws it.
pub fn next_index(step: &Step, idx: usize, vars: View<'_>, rng: &mut u64) -> usize {
    match step.next {
        Some(n)
            if step.test.is_none_or(|t| vars.get(t).is_set())
                && (step.chance >= 1.0 || unit(rng) < step.chance) =>
        {
            n
        }
        _ => idx + 1,
    }
}

impl Engine {
    pub(super) fn view<'a>(&'a self, local: &'a [super::vars::Var]) -> View<'a> {
        View {
            local,
            global: &self.globals,
            is_global: &self.sc.var_global,
        }
    }

    /// The step after `idx` for the call in `slot` (see [`next_index`]).
    pub(super) fn next_of(&mut self, slot: usize, idx: usize) -> usize {
        let Some(call) = self.calls[slot].as_ref() else {
            return idx + 1;
        };
        let v = View {
            local: &call.vars,
            global: &self.globals,
            is_global: &self.sc.var_global,
        };
        next_index(&self.sc.steps[idx], idx, v, &mut self.rng)
    }

    /// Runs step `idx`'s actions on `msg` (the message received or sent; `None` for a nop).
    pub(super) fn run_actions(
        &mut self,
        slot: usize,
        idx: usize,
        msg: Option<&[u8]>,
        now: Instant,
    ) -> After {
        let step = &self.sc.steps[idx];
        if step.actions.is_empty() {
            return After::Go(None);
        }
        let Some(call) = self.calls[slot].as_mut() else {
            return After::Ended;
        };
        let mut local = std::mem::take(&mut call.vars);
        let mut global = std::mem::take(&mut self.globals);
        let (mut logs, mut warnings) = (Vec::new(), Vec::new());
        let out = {
            let render = CallValues {
                env: &self.env,
                call,
                vars: View {
                    local: &[],
                    global: &[],
                    is_global: &[],
                },
                last: OnceCell::new(),
            };
            let mut cx = Cx {
                vars: Space {
                    local: &mut local,
                    global: &mut global,
                    is_global: &self.sc.var_global,
                },
                msg,
                msg_index: idx,
                render: &render,
                logs: &mut logs,
                warnings: &mut warnings,
                rng: &mut self.rng,
            };
            actions::run(&step.actions, &mut cx)
        };
        call.vars = local;
        self.globals = global;
        if let Some(f) = out.failure {
            call.action_failure = Some(f);
            warnings.push(format!(
                "Call-Id: {}, action of message {idx} (line {}) failed: {}",
                String::from_utf8_lossy(&call.call_id),
                step.line,
                stats::FAILURES[f]
            ));
        }
        if let Some(l) = self.logs.as_mut() {
            l.append(&mut logs);
        }
        let n = warnings.len() as u64;
        if n > 0 {
            self.stats.count(|c| c.warnings += n);
            if let Some(e) = self.errors.as_mut() {
                e.append(&mut warnings);
            }
        }
        if out.stop_gracefully {
            self.closed = true;
        }
        if out.stop_now {
            self.stop_now = true;
        }
        if let Some(f) = out.fatal {
            self.fatal = Some(f);
        }
        if out.stop_call {
            self.end_call(slot, now, Some(stats::CALL_REJECTED));
            return After::Ended;
        }
        After::Go(out.jump)
    }

    /// The call ends at the end of its scenario: successful unless an action check failed.
    fn finish(&mut self, slot: usize, now: Instant) {
        let f = self.calls[slot].as_ref().and_then(|c| c.action_failure);
        self.end_call(slot, now, f);
    }

    /// How long a `<pause>` at this point of the call lasts.
    fn pause_len(&mut self, slot: usize, p: Pause) -> Duration {
        let ms = match p {
            Pause::Default => return self.env.pause_default,
            Pause::Ms(ms) => ms as f64,
            Pause::Var(i) => self.calls[slot]
                .as_ref()
                .map_or(0.0, |c| self.view(&c.vars).get(i).double()),
            Pause::Dist(d) => d.sample(&mut self.rng),
        };
        Duration::from_secs_f64(ms.max(0.0) / 1000.0)
    }

    /// Runs the call's steps from its current index until it must wait.
    pub(super) fn advance(&mut self, slot: usize, now: Instant, net: &mut impl Net) {
        loop {
            let Some(call) = self.calls[slot].as_mut() else {
                return;
            };
            let idx = call.idx;
            let Some(step) = self.sc.steps.get(idx) else {
                self.finish(slot, now);
                return;
            };
            if let Some((v, inverse)) = step.condexec {
                let set = View {
                    local: &call.vars,
                    global: &self.globals,
                    is_global: &self.sc.var_global,
                }
                .get(v)
                .is_set();
                if set == inverse {
                    self.go_to(slot, idx, None);
                    continue;
                }
            }
            if let Some(r) = step.start_rtd {
                call.rtd_start[r] = now;
            }
            match &step.kind {
                Kind::Send {
                    msg,
                    retrans,
                    start_txn,
                } => {
                    if let Some(m) = &msg.method
                        && m != "ACK"
                        && m != "CANCEL"
                    {
                        call.cseq = call.cseq.wrapping_add(1);
                    }
                    call.msg_index = idx;
                    call.last_send_idx = Some(idx);
                    let mut buf = std::mem::take(&mut self.scratch);
                    msg.render(&values(&self.env, &self.globals, &self.sc, call), &mut buf);
                    // `lost`: not sent, on purpose; retransmissions still go out.
                    let lost = step.lost.unwrap_or(self.env.lost);
                    if lost <= 0.0 || unit(&mut self.rng) * 100.0 >= lost {
                        net.send(call.peer, &buf);
                    }
                    if let Some(t) = start_txn
                        && let Some(b) = call.txn_branch.get_mut(*t)
                    {
                        b.clear();
                        b.extend_from_slice(top_branch(&buf).unwrap_or_default());
                    }
                    if call.reply_to_last.is_empty() && !call.last_msg.is_empty() {
                        call.reply_to_last.clone_from(&buf);
                    }
                    call.last_sent.clone_from(&buf);
                    call.retrans = match retrans {
                        Some(t1) if self.env.retrans => {
                            let t1 = Duration::from_millis(*t1);
                            let invite = msg.method.as_deref() == Some("INVITE")
                                || (msg.code.is_some() && cseq_is_invite(&call.last_msg));
                            Some(Retrans {
                                at: now + t1,
                                interval: t1,
                                count: 0,
                                invite,
                            })
                        }
                        _ => None,
                    };
                    let at = call.retrans.as_ref().map(|r| r.at);
                    let after = self.run_actions(slot, idx, Some(&buf), now);
                    self.scratch = buf;
                    let After::Go(jump) = after else { return };
                    self.step_done(slot, idx, now);
                    self.go_to(slot, idx, jump);
                    if let Some(at) = at {
                        self.arm(slot, at);
                    }
                }
                Kind::Pause(p) => {
                    let d = self.pause_len(slot, *p);
                    if d.is_zero() {
                        self.step_done(slot, idx, now);
                        self.go_to(slot, idx, None);
                        continue;
                    }
                    if let Some(call) = self.calls[slot].as_mut() {
                        call.wake = Some((now + d, Wake::Pause));
                    }
                    self.arm(slot, now + d);
                    return;
                }
                Kind::Timewait(ms) => {
                    // A timewait ends the call rather than completing: counted on entry.
                    self.stats.step(idx).msgs += 1;
                    let at = now + Duration::from_millis(*ms);
                    call.wake = Some((at, Wake::Timewait));
                    self.arm(slot, at);
                    return;
                }
                Kind::Nop => {
                    let After::Go(jump) = self.run_actions(slot, idx, None, now) else {
                        return;
                    };
                    self.step_done(slot, idx, now);
                    self.go_to(slot, idx, jump);
                }
                Kind::Recv { timeout, .. } => {
                    let t = timeout.map(Duration::from_millis).or(self.env.recv_timeout);
                    let queued = call.queued_from.is_some();
                    if let Some(t) = t {
                        call.wake = Some((now + t, Wake::RecvTimeout));
                        self.arm(slot, now + t);
                    }
                    if queued {
                        self.replay_queued(slot, now, net);
                    }
                    return;
                }
            }
        }
    }

    /// Moves the call past step `idx`: to `jump`'s target, or its next step.
    pub(super) fn go_to(&mut self, slot: usize, idx: usize, jump: Option<usize>) {
        let to = jump.unwrap_or_else(|| self.next_of(slot, idx));
        if let Some(call) = self.calls[slot].as_mut() {
            call.idx = to;
        }
    }

    /// Counters and response times of a step that just completed.
    pub(super) fn step_done(&mut self, slot: usize, idx: usize, now: Instant) {
        self.stats.step(idx).msgs += 1;
        let step = &self.sc.steps[idx];
        let Some(call) = self.calls[slot].as_mut() else {
            return;
        };
        if let Some(r) = step.rtd
            && (!call.rtd_done[r] || step.repeat_rtd)
        {
            call.rtd_done[r] = true;
            let d = now - call.rtd_start[r];
            self.stats.rtd(r, d);
            if let Some(s) = self.rtt.as_mut() {
                s.push((now, d, r));
            }
        }
        if let Some(c) = step.counter {
            self.stats.count(|s| s.counters[c] += 1);
        }
    }

    /// Runs the `<init>` nops' actions once, on the run-wide variables (their call-local
    /// variables are thrown away, as in SIPp).
    pub fn run_init(&mut self, now: Instant) {
        if self.sc.init.is_empty() {
            return;
        }
        let dummy = super::call::Call::blank(now, self.env.local);
        let mut local = vec![super::vars::Var::Unset; self.sc.vars.len()];
        let mut global = std::mem::take(&mut self.globals);
        let (mut logs, mut warnings) = (Vec::new(), Vec::new());
        for (i, step) in self.sc.init.iter().enumerate() {
            let render = CallValues {
                env: &self.env,
                call: &dummy,
                vars: View {
                    local: &[],
                    global: &[],
                    is_global: &[],
                },
                last: OnceCell::new(),
            };
            let mut cx = Cx {
                vars: Space {
                    local: &mut local,
                    global: &mut global,
                    is_global: &self.sc.var_global,
                },
                msg: None,
                msg_index: i,
                render: &render,
                logs: &mut logs,
                warnings: &mut warnings,
                rng: &mut self.rng,
            };
            let out = actions::run(&step.actions, &mut cx);
            self.stop_now |= out.stop_now;
            if out.fatal.is_some() {
                self.fatal = out.fatal;
                break;
            }
        }
        self.globals = global;
        if let Some(l) = self.logs.as_mut() {
            l.append(&mut logs);
        }
        if let Some(e) = self.errors.as_mut() {
            e.append(&mut warnings);
        }
    }

    /// UAC: starts one call now.
    pub fn start_call(&mut self, now: Instant, net: &mut impl Net) {
        let remote: SocketAddr = self.env.send_to.unwrap_or(self.env.remote);
        let slot = self.new_call(now, None, remote);
        self.advance(slot, now, net);
    }
}
