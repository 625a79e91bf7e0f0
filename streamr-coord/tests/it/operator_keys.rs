//! Operator names bound to operator keys: the first key that proves a node under a name binds
//! it; a registration naming a bound operator without that key's signature is refused, and a
//! node that proves nothing is its own operator (its record keeps no operator key). Runs
//! against SQLite and PostgreSQL.

use crate::common;

use axum::http::StatusCode;
use common::*;
use serde_json::Value;
use streamr_coord::wire::NodeRegistration;
use streamr_coord::Coordinator;
use streamr_core::{KeyPair, OperatorMembership, OperatorRotation, Signed};

on_both_backends!(
    an_operator_name_is_bound_to_the_first_key_that_proves_a_node,
    operator_names_are_bound_in_their_canonical_form,
    an_operator_key_is_rotated_by_its_own_statement_once,
    of_two_rotations_from_one_key_at_once_one_wins,
);

/// `node`'s registration under `operator`, with `proof` as its membership.
fn under(
    node: &KeyPair,
    operator: &str,
    proof: Option<OperatorMembership>,
) -> Signed<NodeRegistration> {
    let mut registration = registration(node, "http://10.1.2.3:8080").body;
    registration.operator = operator.into();
    registration.operator_membership = proof;
    Signed::sign(registration, node)
}

/// `operator`'s signature over `node` as one of its nodes under `name`.
fn proof(operator: &KeyPair, name: &str, node: &KeyPair) -> Option<OperatorMembership> {
    Some(OperatorMembership::sign(operator, name, &node.node_id()))
}

async fn an_operator_name_is_bound_to_the_first_key_that_proves_a_node(db: &TestDb) {
    let storage = db.storage().await;
    let api = Client::new(Coordinator::new(test_config(), storage.clone()));
    let acme = KeyPair::from_seed([0xac; 32]);
    let squatter = KeyPair::from_seed([0x5a; 32]);
    let node = |seed: u8| KeyPair::from_seed([seed; 32]);
    let stored_key = |id: String| {
        let storage = storage.clone();
        async move {
            storage
                .get_node(&id)
                .await
                .expect("get node")
                .map(|n| n.operator_key)
        }
    };
    let refused = |status: StatusCode, body: &Value, code: &str| {
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"], code, "{body}");
    };

    // The first proof binds "acme" to acme's key; its nodes are members.
    let (a, e) = (node(1), node(5));
    for n in [&a, &e] {
        let (status, body) = api
            .post("/nodes", &under(n, "acme", proof(&acme, "acme", n)))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let key = stored_key(n.node_id().to_string()).await;
        assert_eq!(key, Some(Some(acme.operator_key().to_string())));
    }

    // Naming "acme" without acme's signature, or with another key's: refused, nothing stored.
    let b = node(2);
    let (status, body) = api.post("/nodes", &under(&b, "acme", None)).await;
    refused(status, &body, "operator_name_bound");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains(&acme.operator_key().to_string())),
        "{body}"
    );
    let c = node(3);
    let (status, body) = api
        .post("/nodes", &under(&c, "acme", proof(&squatter, "acme", &c)))
        .await;
    refused(status, &body, "operator_name_bound");
    for n in [&b, &c] {
        assert_eq!(stored_key(n.node_id().to_string()).await, None);
    }
    // A proof signed for another node is a bad signature.
    let d = node(4);
    let (status, body) = api
        .post("/nodes", &under(&d, "acme", proof(&acme, "acme", &a)))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "bad_signature", "{body}");

    // A free name without proof: the node is its own operator, and the name stays free until
    // a key claims it; then that node's next registration without the key is refused.
    let f = node(6);
    let (status, body) = api.post("/nodes", &under(&f, "freename", None)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(stored_key(f.node_id().to_string()).await, Some(None));
    let g = node(7);
    let (status, body) = api
        .post(
            "/nodes",
            &under(&g, "freename", proof(&squatter, "freename", &g)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = api.post("/nodes", &under(&f, "freename", None)).await;
    refused(status, &body, "operator_name_bound");

    // The default name is nobody's: never bound, never refused.
    for n in [node(8), node(9)] {
        let (status, body) = api
            .post(
                "/nodes",
                &under(&n, "anonymous", proof(&squatter, "anonymous", &n)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(stored_key(n.node_id().to_string()).await, Some(None));
    }
}

/// "Acme", "acme " and "ＡＣＭＥ" are one name: bound once, refused to another key in every
/// spelling; bindings stored before (under names as written) are re-keyed under their
/// canonical form when the storage opens, the earlier binding of two keeping the name.
async fn operator_names_are_bound_in_their_canonical_form(db: &TestDb) {
    let acme = KeyPair::from_seed([0xac; 32]);
    let squatter = KeyPair::from_seed([0x5a; 32]);
    let zeta = KeyPair::from_seed([0x2e; 32]);
    let hex = |k: &KeyPair| k.operator_key().to_string();
    {
        let storage = db.storage().await;
        // Rows as a coordinator that bound names as written left them.
        for (name, key, at) in [
            ("Acme ", &squatter, 10),
            ("ACME", &acme, 5),
            ("Anonymous", &squatter, 1),
            ("Zeta", &zeta, 7),
        ] {
            storage
                .bind_operator(name, &hex(key), at)
                .await
                .expect("bind");
        }
    }
    let storage = db.storage().await;
    assert_eq!(
        storage.operator_bindings().await.expect("bindings"),
        vec![
            ("acme".to_owned(), hex(&acme)),
            ("zeta".to_owned(), hex(&zeta))
        ]
    );
    // Opening again changes nothing.
    let storage = db.storage().await;
    assert_eq!(
        storage.operator_bindings().await.expect("bindings").len(),
        2
    );

    let api = Client::new(Coordinator::new(test_config(), storage.clone()));
    let node = |seed: u8| KeyPair::from_seed([seed; 32]);
    // The squatter's key lost "acme": refused in every spelling, the message naming the
    // canonical name and the key that kept it.
    for (seed, spelling) in [
        (1u8, "acme"),
        (2, "Acme "),
        (3, "ＡＣＭＥ"),
        (4, "a\u{200b}cme"),
    ] {
        let n = node(seed);
        let (status, body) = api
            .post(
                "/nodes",
                &under(&n, spelling, proof(&squatter, spelling, &n)),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{spelling:?}: {body}");
        assert_eq!(body["error"], "operator_name_bound", "{body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains("\"acme\""), "{body}");
        assert!(message.contains(&hex(&acme)), "{body}");
        let (status, body) = api.post("/nodes", &under(&n, spelling, None)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{spelling:?}: {body}");
    }
    // acme's key proves nodes under any spelling, signed as written or canonical.
    for (seed, spelling, signed) in [(5u8, "Acme", "Acme"), (6, " ACME", "acme")] {
        let n = node(seed);
        let (status, body) = api
            .post("/nodes", &under(&n, spelling, proof(&acme, signed, &n)))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{spelling:?}: {body}");
        let stored = storage
            .get_node(&n.node_id().to_string())
            .await
            .expect("get node")
            .and_then(|n| n.operator_key);
        assert_eq!(stored, Some(hex(&acme)));
    }
    // A fresh name is bound in its canonical form on first proof, whatever its spelling.
    let n = node(7);
    let (status, body) = api
        .post("/nodes", &under(&n, "New Co", proof(&zeta, "New Co", &n)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        storage.operator_binding("new co").await.expect("binding"),
        Some(hex(&zeta))
    );
    let n = node(8);
    let (status, body) = api
        .post(
            "/nodes",
            &under(&n, "new  co", proof(&squatter, "new  co", &n)),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // The default name in any spelling is nobody's.
    let n = node(9);
    let (status, body) = api
        .post(
            "/nodes",
            &under(&n, "ANONYMOUS", proof(&squatter, "ANONYMOUS", &n)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        storage
            .operator_binding("anonymous")
            .await
            .expect("binding"),
        None
    );
}

/// The bound key's rotation statement moves the name to the new key: memberships by the old
/// key are refused (403 `operator_key_retired`), nodes register with the new key's; the same
/// statement played again, or an older one after the name moved back, is refused (409), as is
/// one by a key the name is not bound to (409) or a forged one (401). An administrator can
/// unbind the name, and old statements stay refused after it is bound again.
async fn an_operator_key_is_rotated_by_its_own_statement_once(db: &TestDb) {
    let storage = db.storage().await;
    let api = Client::new(Coordinator::new(test_config(), storage.clone()));
    let (old, new, squatter) = (
        KeyPair::from_seed([0xa1; 32]),
        KeyPair::from_seed([0xb2; 32]),
        KeyPair::from_seed([0x5a; 32]),
    );
    let hex = |k: &KeyPair| k.operator_key().to_string();
    let node = |seed: u8| KeyPair::from_seed([seed; 32]);
    let register = |n: KeyPair, key: &KeyPair| {
        let body = under(&n, "acme", proof(key, "acme", &n));
        let api = &api;
        async move { api.post("/nodes", &body).await }
    };
    let rotate = |statement: &OperatorRotation| {
        let body = statement.clone();
        let api = &api;
        async move { api.post("/operators/rotations", &body).await }
    };
    let expect = |(status, body): (StatusCode, Value), want: StatusCode, code: &str| {
        assert_eq!(status, want, "{body}");
        if !code.is_empty() {
            assert_eq!(body["error"], code, "{body}");
        }
        body
    };

    // A name no registration could carry (too long, or with control characters) is refused
    // before it is looked up or echoed back.
    for hostile in ["a".repeat(100_000), "ac\u{0}me".to_owned()] {
        let statement = OperatorRotation::sign(&old, &hostile, new.operator_key(), 1);
        let body = expect(
            rotate(&statement).await,
            StatusCode::BAD_REQUEST,
            "invalid_field",
        );
        assert!(body.to_string().len() < 1_000, "the name is not echoed");
    }

    // Not bound yet: nothing to rotate.
    let first = OperatorRotation::sign(&old, "acme", new.operator_key(), 1);
    expect(rotate(&first).await, StatusCode::NOT_FOUND, "not_found");
    expect(register(node(1), &old).await, StatusCode::CREATED, "");

    // A forged statement, one by a key the name is not bound to, and one to the same key.
    let forged = OperatorRotation {
        new_key: squatter.operator_key(),
        ..first.clone()
    };
    expect(
        rotate(&forged).await,
        StatusCode::UNAUTHORIZED,
        "bad_signature",
    );
    let by_squatter = OperatorRotation::sign(&squatter, "acme", new.operator_key(), 1);
    expect(
        rotate(&by_squatter).await,
        StatusCode::CONFLICT,
        "operator_key_not_bound",
    );
    let same = OperatorRotation::sign(&old, "acme", old.operator_key(), 1);
    expect(
        rotate(&same).await,
        StatusCode::BAD_REQUEST,
        "invalid_field",
    );

    // The bound key's statement (any spelling of the name) moves it.
    let first = OperatorRotation::sign(&old, "ACME ", new.operator_key(), 1);
    let body = expect(rotate(&first).await, StatusCode::OK, "");
    assert_eq!(body["operator"], "acme", "{body}");
    assert_eq!(body["operator_key"], hex(&new), "{body}");
    assert_eq!(body["rotation"], 1, "{body}");
    assert_eq!(
        storage.operator_binding("acme").await.expect("binding"),
        Some(hex(&new))
    );
    // Played again: the old key is no longer bound.
    expect(
        rotate(&first).await,
        StatusCode::CONFLICT,
        "operator_key_not_bound",
    );

    // The old key's memberships are refused, saying it was retired; the new key's are taken.
    let body = expect(
        register(node(2), &old).await,
        StatusCode::FORBIDDEN,
        "operator_key_retired",
    );
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&hex(&old)) && message.contains(&hex(&new)),
        "{body}"
    );
    // Also for a node that registered with it before the rotation.
    expect(
        register(node(1), &old).await,
        StatusCode::FORBIDDEN,
        "operator_key_retired",
    );
    expect(register(node(1), &new).await, StatusCode::OK, "");
    expect(register(node(3), &new).await, StatusCode::CREATED, "");
    // Another key is still told the name is bound.
    expect(
        register(node(4), &squatter).await,
        StatusCode::FORBIDDEN,
        "operator_name_bound",
    );

    // Moving back to the old key at sequence 2, then replaying the first statement: the old
    // key is bound again, but the sequence is spent.
    let back = OperatorRotation::sign(&new, "acme", old.operator_key(), 2);
    expect(rotate(&back).await, StatusCode::OK, "");
    let body = expect(
        rotate(&first).await,
        StatusCode::CONFLICT,
        "stale_operator_rotation",
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("sequence 3")),
        "{body}"
    );

    // The administrator unbinds the name (any spelling); without the token: 401.
    let (status, _) = api
        .raw("DELETE", "/operators/Acme", Vec::new(), false)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = api.raw("DELETE", "/operators/Acme", Vec::new(), true).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        storage.operator_binding("acme").await.expect("binding"),
        None
    );
    let (status, body) = api.raw("DELETE", "/operators/acme", Vec::new(), true).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // The first proof binds it again; the old statements stay spent.
    expect(register(node(5), &old).await, StatusCode::CREATED, "");
    expect(
        rotate(&first).await,
        StatusCode::CONFLICT,
        "stale_operator_rotation",
    );
    let third = OperatorRotation::sign(&old, "acme", new.operator_key(), 3);
    expect(rotate(&third).await, StatusCode::OK, "");
}

/// Two replicas (two coordinators on one database) each accept a rotation from the bound key
/// at the same time, to two different keys: one wins, the other is refused, and the name is
/// bound to the winner's key.
async fn of_two_rotations_from_one_key_at_once_one_wins(db: &TestDb) {
    let storage = db.storage().await;
    let first = Client::new(Coordinator::new(test_config(), storage.clone()));
    let second = Client::new(Coordinator::new(test_config(), db.storage().await));
    let old = KeyPair::from_seed([0xa1; 32]);
    let node = KeyPair::from_seed([1; 32]);
    let (status, body) = first
        .post("/nodes", &under(&node, "acme", proof(&old, "acme", &node)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut signer = old;
    for round in 0..5u8 {
        let sequence = u64::from(round) + 1;
        let (to_b, to_c) = (
            KeyPair::from_seed([0x10 + round; 32]),
            KeyPair::from_seed([0x20 + round; 32]),
        );
        let b = OperatorRotation::sign(&signer, "acme", to_b.operator_key(), sequence);
        let c = OperatorRotation::sign(&signer, "acme", to_c.operator_key(), sequence);
        let ((status_b, body_b), (status_c, body_c)) = tokio::join!(
            first.post("/operators/rotations", &b),
            second.post("/operators/rotations", &c)
        );
        let won: Vec<_> = [(status_b, &to_b), (status_c, &to_c)]
            .into_iter()
            .filter(|(status, _)| *status == StatusCode::OK)
            .collect();
        assert_eq!(won.len(), 1, "round {round}: {body_b} / {body_c}");
        let lost = if status_b == StatusCode::OK {
            (status_c, body_c)
        } else {
            (status_b, body_b)
        };
        assert!(
            lost.0 == StatusCode::CONFLICT,
            "round {round}: the loser answers 409: {}",
            lost.1
        );
        let winner = won[0].1.clone();
        assert_eq!(
            storage.operator_binding("acme").await.expect("binding"),
            Some(winner.operator_key().to_string()),
            "round {round}"
        );
        signer = winner;
    }
}
