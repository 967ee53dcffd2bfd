//! Scenario compilation: builtins, refusals with lines, labels, actions and variables.

use std::collections::HashMap;

use super::scenario::*;

fn p(xml: &str) -> Result<Scenario, ScenarioError> {
    parse(xml, "t.xml", &HashMap::new(), &[])
}

#[test]
fn builtins_compile() {
    let uac = p(super::builtin::UAC).unwrap();
    assert!(uac.uac);
    assert_eq!(uac.rtds, vec!["1"]);
    assert_eq!(uac.rt_repartition, vec![10, 20, 30, 40, 50, 100, 150, 200]);
    let uas = p(super::builtin::UAS).unwrap();
    assert!(!uas.uac);
    assert!(matches!(
        uas.steps.last().unwrap().kind,
        Kind::Timewait(4000)
    ));
}

#[test]
fn unsupported_things_are_refused_with_their_line() {
    let e = p(
        "<scenario>\n<recv request=\"INVITE\">\n  <action>\n  <verifyauth assign_to=\"a\"/>\n  </action>\n</recv>\n</scenario>",
    )
    .unwrap_err();
    assert_eq!(e.line, 4, "{e}");
    assert!(e.to_string().contains("<verifyauth>"), "{e}");
    let e = p("<scenario>\n<nop>\n<action>\n<assign assign_to=\"typo\" value=\"1\"/>\n</action>\n</nop>\n</scenario>")
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("t.xml:4: variable $typo is referenced only once"),
        "{e}"
    );
    let e = p("<scenario>\n<recv request=\"A\">\n<action>\n<jump value=\"0\"/>\n</action>\n</recv>\n</scenario>").unwrap_err();
    assert!(e.reason.contains("<jump> in a <recv>"), "{e}");
    let e = p("<scenario>\n\n<sendCmd/>\n</scenario>").unwrap_err();
    assert_eq!((e.line, e.reason.contains("3PCC")), (3, true), "{e}");
    let e = p("<scenario>\n<recv response=\"401\" auth=\"true\"/>\n</scenario>").unwrap_err();
    assert!(
        e.to_string().starts_with("t.xml:2: attribute `auth`"),
        "{e}"
    );
    let e = p("<scenario>\n<recv request=\"BYE\" lost=\"110\"/>\n</scenario>").unwrap_err();
    assert!(e.reason.contains("not a percentage"), "{e}");
    let e = p("<scenario>\n<send><![CDATA[\nINVITE sip:[bogus] SIP/2.0\n]]></send>\n</scenario>")
        .unwrap_err();
    assert!(e.to_string().contains("[bogus]"), "{e}");
}

#[test]
fn labels_and_matching_prepared() {
    let sc = p(r#"<scenario>
<send><![CDATA[OPTIONS sip:x SIP/2.0]]></send>
<recv response="200" next="end"/>
<pause milliseconds="5"/>
<label id="end"/>
<nop/>
</scenario>"#)
    .unwrap();
    assert_eq!(sc.steps[1].next, Some(3));
    let Kind::Recv { sent_methods, .. } = &sc.steps[1].kind else {
        panic!()
    };
    assert_eq!(sent_methods, &["OPTIONS"]);
    assert!(p("<scenario><recv response=\"200\" next=\"nowhere\"/></scenario>").is_err());
}

#[test]
fn actions_tests_and_variables_are_attached() {
    let sc = parse(
        r#"<scenario>
<Global variables="g"/>
<recv request="INVITE" optional="global" test="hit" next="end">
  <action>
<ereg regexp="Call-ID: (.*)" search_in="msg" assign_to="_,id"/>
<assignstr assign_to="hit" value="[$id][$g]"/>
  </action>
</recv>
<send><![CDATA[SIP/2.0 200 OK
X-Id: [$id]
X-S: [$s]
]]><action><log message="[$hit]"/></action></send>
<pause variable="g" condexec="hit" condexec_inverse="true" chance="0.5"/>
<label id="end"/>
</scenario>"#,
        "t.xml",
        &HashMap::new(),
        &["s".to_owned()],
    )
    .unwrap();
    assert_eq!(sc.vars, ["s", "g", "hit", "_", "id"]);
    assert_eq!(sc.var_global, [true, true, false, false, false]);
    assert_eq!(sc.steps[0].actions.len(), 2);
    assert_eq!(sc.steps[1].actions.len(), 1);
    assert_eq!((sc.steps[0].test, sc.steps[0].next), (Some(2), Some(3)));
    assert!(matches!(sc.steps[0].kind, Kind::Recv { global: true, .. }));
    assert!(matches!(sc.steps[2].kind, Kind::Pause(Pause::Var(1))));
    assert_eq!(
        (sc.steps[2].condexec, sc.steps[2].chance),
        (Some((2, true)), 0.5)
    );
}

#[test]
fn user_variables_and_the_unexpected_message_label() {
    let sc = p(
        "<scenario>\n<User variables=\"n\"/>\n<recv request=\"INVITE\"/>\n\
        <nop><action><add assign_to=\"n\" value=\"1\"/></action></nop>\n\
        <label id=\"_unexp.main\"/>\n<recv request=\"BYE\"/>\n\
        <nop><action><jump variable=\"_unexp.retaddr\"/></action></nop>\n</scenario>",
    )
    .unwrap();
    let n = sc.vars.iter().position(|v| v == "n").unwrap();
    assert!(sc.var_user[n] && !sc.var_global[n]);
    assert_eq!(sc.unexp_main, Some(2));
    assert_eq!(
        sc.unexp_retaddr,
        sc.vars.iter().position(|v| v == "_unexp.retaddr")
    );
    assert!(sc.unexp_retaddr.is_some() && sc.unexp_pausedaddr.is_none());
}
