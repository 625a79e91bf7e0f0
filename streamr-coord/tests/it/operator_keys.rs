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
use streamr_core::{KeyPair, OperatorMembership, Signed};

on_both_backends!(an_operator_name_is_bound_to_the_first_key_that_proves_a_node);

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
