//! Actions run against variables: ereg, the arithmetic family, test, strcmp, sample.

use super::actions::*;
use super::stats;
use super::template::Template;
use super::vars::{Space, Var};

struct Lit;
impl Render for Lit {
    fn render(&self, _: &Template, _: &Space<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"rendered");
    }
}

const MSG: &[u8] = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9\r\nContact: <sip:alice@10.0.0.1:5070>\r\nX-Contact: <sip:other@x>\r\nCSeq: 7 INVITE\r\n\r\nv=0\r\n";

fn go(actions: &[Action], local: &mut [Var]) -> Outcome {
    let n = local.len();
    let mut global = vec![Var::Unset; n];
    let is_global = vec![false; n];
    let (mut logs, mut warnings, mut rng) = (Vec::new(), Vec::new(), 1u64);
    let mut cx = Cx {
        vars: Space {
            local,
            global: &mut global,
            is_global: &is_global,
        },
        msg: Some(MSG),
        msg_index: 4,
        render: &Lit,
        logs: &mut logs,
        warnings: &mut warnings,
        rng: &mut rng,
    };
    run(actions, &mut cx)
}

fn ereg(p: &str, look: Look, check_it: bool, to: Vec<usize>) -> Action {
    Action::Ereg {
        re: regex(p, false).unwrap(),
        look,
        case_indep: false,
        check_it,
        check_it_inverse: false,
        assign_to: to,
    }
}

#[test]
fn ereg_captures_from_msg_header_and_var() {
    let mut v = vec![Var::Unset; 4];
    let hdr = Look::Hdr {
        name: "Contact:".into(),
        start_line: true,
        occurrence: 1,
    };
    let o = go(
        &[
            ereg("<sip:([a-z]+)@([^>]*)>", hdr, true, vec![0, 1, 2]),
            ereg("CSeq: ([0-9]+)", Look::Msg, false, vec![3, 3]),
        ],
        &mut v,
    );
    assert_eq!(o, Outcome::default());
    assert_eq!(v[0], Var::Regexp(b"<sip:alice@10.0.0.1:5070>".to_vec()));
    assert_eq!(v[1], Var::Regexp(b"alice".to_vec()));
    assert_eq!(v[2], Var::Regexp(b"10.0.0.1:5070".to_vec()));
    assert_eq!(v[3], Var::Regexp(b"7".to_vec()));
    // Without start_line the first hit may be inside another header's name.
    assert_eq!(
        header_part(MSG, "Contact:", false, false, 2),
        b" <sip:other@x>"
    );
    let mut v = vec![Var::Regexp(b"a-42-b".to_vec()), Var::Unset];
    go(&[ereg("[0-9]+", Look::Var(0), true, vec![1])], &mut v);
    assert_eq!(v[1], Var::Regexp(b"42".to_vec()));
}

#[test]
fn failed_checks_name_the_reason_and_stop_the_list() {
    let mut v = vec![Var::Unset; 2];
    let hdr = Look::Hdr {
        name: "Route:".into(),
        start_line: false,
        occurrence: 1,
    };
    let o = go(&[ereg("x", hdr, true, vec![0])], &mut v);
    assert_eq!(o.failure, Some(stats::REGEXP_HDR_NOT_FOUND));
    let o = go(
        &[
            ereg("nothere", Look::Msg, true, vec![0]),
            Action::Arith {
                op: Arith::Assign,
                to: 1,
                rhs: Operand::Value(1.0),
            },
        ],
        &mut v,
    );
    assert_eq!(o.failure, Some(stats::REGEXP_DOESNT_MATCH));
    assert_eq!(v[1], Var::Unset, "actions after a failed check do not run");
}

#[test]
fn arithmetic_test_and_strcmp() {
    let mut v = vec![Var::Unset; 4];
    let set = |op, to, x| Action::Arith {
        op,
        to,
        rhs: Operand::Value(x),
    };
    let o = go(
        &[
            set(Arith::Assign, 0, 6.0),
            set(Arith::Add, 0, 4.0),
            set(Arith::Multiply, 0, 3.0),
            set(Arith::Subtract, 0, 5.0),
            set(Arith::Divide, 0, 5.0),
            set(Arith::Divide, 0, 0.0),
            Action::Test {
                to: Some(1),
                lhs: 0,
                cmp: Compare::GreaterThanEqual,
                rhs: Operand::Value(5.0),
                check_it: false,
                check_it_inverse: false,
            },
            Action::AssignStr {
                to: 2,
                value: super::template::compile_text("x", &Default::default(), &mut |_| 0).unwrap(),
            },
            Action::Strcmp {
                to: Some(3),
                lhs: 2,
                rhs: Ok(b"rendered".to_vec()),
                check_it: true,
                check_it_inverse: false,
            },
            Action::Index(0),
        ],
        &mut v,
    );
    assert_eq!(o, Outcome::default());
    assert_eq!(v[1], Var::Bool(true));
    assert_eq!(v[3], Var::Double(0.0));
    assert_eq!(v[0], Var::Double(4.0));
    let o = go(
        &[Action::Test {
            to: None,
            lhs: 0,
            cmp: Compare::LessThan,
            rhs: Operand::Value(1.0),
            check_it: true,
            check_it_inverse: false,
        }],
        &mut v,
    );
    assert_eq!(o.failure, Some(stats::TEST_DOESNT_MATCH));
    assert_eq!(strcmp(b"abc", b"abd"), -1);
    assert_eq!(strcmp(b"ab", b"abc"), -99);
}

#[test]
fn uniform_samples_stay_in_range() {
    let mut rng = 7u64;
    let d = Dist::Uniform {
        min: 10.0,
        max: 20.0,
    };
    for _ in 0..1000 {
        let x = d.sample(&mut rng);
        assert!((10.0..20.0).contains(&x), "{x}");
    }
}
