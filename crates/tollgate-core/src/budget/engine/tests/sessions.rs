//! Session caps: per (team, session id), counting what other replicas already settled.

use super::*;

fn capped(team: &str) -> BudgetDef {
    BudgetDef {
        session_cap: Some(usd(5)),
        ..team_budget(&format!("b_{team}"), team, Period::Month, usd(1_000))
    }
}

async fn session_call(
    budgets: &Budgets,
    team: &str,
    session: Option<&str>,
    estimate: Money,
) -> Result<Reservation, Refusal> {
    budgets
        .reserve(team, "key-1", session, estimate)
        .await
        .map(Option::unwrap)
}

#[tokio::test]
async fn a_session_past_its_cap_is_refused_and_other_sessions_are_not() {
    let (leases, clock) = (Arc::default(), Clock::at("2026-11-18T10:00:00Z"));
    let budgets = engine(&leases, &clock);
    budgets.set_budgets(vec![capped("platform"), capped("research")]);

    session_call(&budgets, "platform", Some("s1"), usd(4))
        .await
        .unwrap()
        .settle(usd(3));
    assert_eq!(
        session_call(&budgets, "platform", Some("s1"), usd(3))
            .await
            .err(),
        Some(Refusal::SessionCap {
            team_id: "platform".into(),
            session_id: "s1".into(),
            cap: usd(5),
            spent: usd(3),
            estimate: usd(3),
        })
    );
    // Up to the cap exactly is allowed.
    session_call(&budgets, "platform", Some("s1"), usd(2))
        .await
        .unwrap();
    session_call(&budgets, "platform", Some("s2"), usd(5))
        .await
        .unwrap();
    // The same session id sent by another team is another session.
    session_call(&budgets, "research", Some("s1"), usd(5))
        .await
        .unwrap();
    // Calls without a session id are held by the budget only.
    session_call(&budgets, "platform", None, usd(50))
        .await
        .unwrap();
}

#[tokio::test]
async fn what_other_replicas_spent_in_a_session_counts_against_its_cap() {
    let (leases, clock) = (Arc::default(), Clock::at("2026-11-18T10:00:00Z"));
    let budgets = engine(&leases, &clock);
    budgets.set_budgets(vec![capped("platform")]);

    budgets.observe_sessions(
        &[("platform".into(), "s1".into(), 4 * USD, clock.now())],
        3_600_000,
    );
    let refused = session_call(&budgets, "platform", Some("s1"), usd(2)).await;
    assert!(matches!(refused, Err(Refusal::SessionCap { spent, .. }) if spent == usd(4)));
    session_call(&budgets, "platform", Some("s1"), usd(1))
        .await
        .unwrap();
}
