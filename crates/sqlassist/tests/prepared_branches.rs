//! Branch ids and the operations recovery builds on, against real PostgreSQL and MariaDB:
//! the prepared branches a database lists, classified by owner (ours, another node's,
//! sqlassist's prefix but malformed, foreign); commit and rollback of one branch by id from
//! a pool connection; and the ids a managed transaction prepares parsing back to the node,
//! incarnation, sequence and engine that made them.

// Test helpers fail the test on any error, like the test functions themselves.
#![allow(clippy::unwrap_used)]

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use diesel::connection::SimpleConnection;
use diesel::Connection;
use sqlassist::{
    BranchId, DatabaseUrl, Engine, EngineOptions, Finished, InitOptions, NodeId, Owner,
    PreparedBranch, Registry,
};
use transaction::{BoxError, Branch, DecisionLog, TransactionId, TransactionManager};

use common::{reset_thread, unique, Table};

fn engine(url: &str) -> Engine {
    Engine::new(EngineOptions::new(DatabaseUrl::parse(url).unwrap())).unwrap()
}

/// A node id no other test uses.
fn test_node() -> NodeId {
    NodeId::new(&unique("t").replace('_', "-")).unwrap()
}

/// The listed branch whose id is `id`.
fn find<'a>(listed: &'a [PreparedBranch], id: &str) -> Option<&'a PreparedBranch> {
    listed.iter().find(|b| b.id() == id)
}

#[test]
fn postgresql_branches_are_listed_by_owner_and_finished_by_id_from_any_connection() {
    let Some(url) = common::pg_url("SQLASSIST_TEST_PG_URL") else {
        return;
    };
    let table = Table::pg(&url, "pb_pg", "name TEXT");
    let me = test_node();
    let other = test_node();
    let ours = |seq| BranchId::new(me.clone(), 5, seq, "orders").unwrap();
    let theirs = BranchId::new(other.clone(), 5, 1, "orders").unwrap();
    let malformed = format!("sqlassist_{me}_5_1_orders");
    let foreign = unique("someone_else");
    let gids = [
        ours(1).to_string(),
        ours(2).to_string(),
        theirs.to_string(),
        malformed.clone(),
        foreign.clone(),
    ];
    for (v, gid) in gids.iter().enumerate() {
        let mut c = diesel::PgConnection::establish(&url).unwrap();
        c.batch_execute(&format!(
            "BEGIN; INSERT INTO {} VALUES ('{v}'); PREPARE TRANSACTION '{gid}'",
            &*table
        ))
        .unwrap();
    }

    let engine = engine(&url);
    let listed = engine.prepared_branches(&me).unwrap();
    assert_eq!(
        find(&listed, &gids[0]).unwrap().owner(),
        &Owner::Ours(ours(1))
    );
    assert_eq!(
        find(&listed, &gids[1]).unwrap().owner(),
        &Owner::Ours(ours(2))
    );
    assert_eq!(
        find(&listed, &gids[2]).unwrap().owner(),
        &Owner::OtherNode(theirs)
    );
    assert_eq!(
        find(&listed, &malformed).unwrap().owner(),
        &Owner::Malformed {
            field: "incarnation"
        }
    );
    assert_eq!(find(&listed, &foreign).unwrap().owner(), &Owner::Foreign);

    let first = find(&listed, &gids[0]).unwrap();
    let second = find(&listed, &gids[1]).unwrap();
    assert_eq!(engine.commit_prepared(first).unwrap(), Finished::Done);
    assert_eq!(engine.rollback_prepared(second).unwrap(), Finished::Done);
    // Finished already: the server no longer knows them.
    assert_eq!(engine.commit_prepared(first).unwrap(), Finished::Absent);
    assert_eq!(engine.rollback_prepared(second).unwrap(), Finished::Absent);
    assert_eq!(common::pg::names(&url, &table), ["0"]);

    let left = engine.prepared_branches(&me).unwrap();
    assert!(find(&left, &gids[0]).is_none() && find(&left, &gids[1]).is_none());
    for gid in &gids[2..] {
        engine.rollback_prepared(find(&left, gid).unwrap()).unwrap();
    }
    assert_eq!(common::pg::names(&url, &table), ["0"]);
}

#[test]
fn mariadb_branches_are_listed_by_owner_and_finished_by_id_from_any_connection() {
    let Some(url) = common::mysql_url("SQLASSIST_TEST_MYSQL_URL") else {
        return;
    };
    let table = Table::mysql(&url, "pb_my", "name VARCHAR(16)");
    let me = test_node();
    let gtrid = |seq: u64| format!("sqlassist_{me}_00000005_{seq:016x}");
    let ours = |seq| BranchId::new(me.clone(), 5, seq, "orders").unwrap();
    let xids = [
        format!("'{}','orders'", gtrid(1)),
        format!("'{}','orders'", gtrid(2)),
        format!("'{}','orders',7", gtrid(3)), // another format id: not ours
        format!("'{}','bad engine'", gtrid(4)),
    ];
    for (v, xid) in xids.iter().enumerate() {
        // The branch detaches from its connection when the connection closes.
        let mut c = diesel::MysqlConnection::establish(&url).unwrap();
        c.batch_execute(&format!(
            "XA START {xid}; INSERT INTO {} VALUES ('{v}'); XA END {xid}; XA PREPARE {xid}",
            &*table
        ))
        .unwrap();
    }

    let engine = engine(&url);
    let listed = engine.prepared_branches(&me).unwrap();
    let by_gtrid = |seq: u64| {
        let hex: String = gtrid(seq).bytes().map(|b| format!("{b:02x}")).collect();
        listed
            .iter()
            .find(|b| b.id().starts_with(&format!("X'{hex}'")))
            .unwrap_or_else(|| panic!("branch {seq} listed: {listed:?}"))
    };
    assert_eq!(by_gtrid(1).owner(), &Owner::Ours(ours(1)));
    assert_eq!(by_gtrid(2).owner(), &Owner::Ours(ours(2)));
    assert_eq!(
        by_gtrid(3).owner(),
        &Owner::Malformed { field: "format id" }
    );
    assert_eq!(by_gtrid(4).owner(), &Owner::Malformed { field: "engine" });

    assert_eq!(engine.commit_prepared(by_gtrid(1)).unwrap(), Finished::Done);
    assert_eq!(
        engine.rollback_prepared(by_gtrid(2)).unwrap(),
        Finished::Done
    );
    assert_eq!(
        engine.commit_prepared(by_gtrid(1)).unwrap(),
        Finished::Absent
    );
    for seq in [3, 4] {
        assert_eq!(
            engine.rollback_prepared(by_gtrid(seq)).unwrap(),
            Finished::Done
        );
    }
    assert_eq!(common::my::names(&url, &table), ["0"]);
}

/// One decision: the transaction, the coordinator's branches, what the databases listed.
type Decision = (TransactionId, Vec<Branch>, Vec<PreparedBranch>);

/// A decision log that lists every engine's prepared branches at the decision, when every
/// branch is prepared and none finished.
struct ListAtDecision {
    engines: Vec<Engine>,
    node: NodeId,
    seen: RefCell<Vec<Decision>>,
}

impl DecisionLog for ListAtDecision {
    fn record_commit(&self, txn: TransactionId, branches: &[Branch]) -> Result<(), BoxError> {
        let mut listed = Vec::new();
        for engine in &self.engines {
            listed.extend(engine.prepared_branches(&self.node)?);
        }
        self.seen
            .borrow_mut()
            .push((txn, branches.to_vec(), listed));
        Ok(())
    }

    fn forget(&self, _txn: TransactionId) -> Result<(), BoxError> {
        Ok(())
    }
}

#[test]
fn the_branches_a_transaction_prepares_parse_back_to_the_transaction_that_made_them() {
    let (Some(pg_url), Some(my_url)) = (
        common::pg_url("SQLASSIST_TEST_PG_URL"),
        common::mysql_url("SQLASSIST_TEST_MYSQL_URL"),
    ) else {
        return;
    };
    let pg_table = Table::pg(&pg_url, "pb_txn_pg", "name TEXT");
    let my_table = Table::mysql(&my_url, "pb_txn_my", "name VARCHAR(16)");
    let node = test_node();
    let (pg_name, my_name) = (unique("pg"), unique("my"));
    let mut registry = Registry::new();
    registry.set_node_id(node.clone());
    registry.set_incarnation(9);
    for (name, url) in [(&pg_name, &pg_url), (&my_name, &my_url)] {
        registry
            .init_engine(name, engine(url), InitOptions::new().managed(true))
            .unwrap();
    }
    let log = Rc::new(ListAtDecision {
        engines: vec![
            registry.engine(&pg_name).unwrap().clone(),
            registry.engine(&my_name).unwrap().clone(),
        ],
        node: node.clone(),
        seen: RefCell::new(Vec::new()),
    });
    let manager = TransactionManager::builder()
        .decision_log(log.clone() as Rc<dyn DecisionLog>)
        .build();
    manager.scope(|| {
        for _ in 0..2 {
            registry
                .session(&pg_name)
                .unwrap()
                .execute(&format!("INSERT INTO {} VALUES ('x')", &*pg_table))
                .unwrap();
            registry
                .session(&my_name)
                .unwrap()
                .execute(&format!("INSERT INTO {} VALUES ('x')", &*my_table))
                .unwrap();
            transaction::commit().unwrap();
        }
    });
    reset_thread();

    let seen = log.seen.borrow();
    assert_eq!(seen.len(), 2);
    assert_ne!(seen[0].0.sequence(), seen[1].0.sequence());
    for (txn, branches, listed) in seen.iter() {
        let expected =
            |engine: &str| BranchId::new(node.clone(), 9, txn.sequence(), engine).unwrap();
        let ours: Vec<&BranchId> = listed
            .iter()
            .filter_map(|b| match b.owner() {
                Owner::Ours(id) if id.sequence() == txn.sequence() => Some(id),
                _ => None,
            })
            .collect();
        let mut want = vec![expected(&pg_name), expected(&my_name)];
        want.sort();
        let mut got: Vec<BranchId> = ours.into_iter().cloned().collect();
        got.sort();
        assert_eq!(got, want, "branches listed at the decision of {txn}");
        // The coordinator's branch ids are the same ids.
        let pg_gid = branches
            .iter()
            .find(|b| b.resource == pg_name)
            .and_then(|b| b.branch_id.clone())
            .unwrap();
        assert_eq!(BranchId::parse(&pg_gid).unwrap(), expected(&pg_name));
    }
    // Committed: nothing of this node is left prepared.
    for engine in &log.engines {
        assert!(engine
            .prepared_branches(&node)
            .unwrap()
            .iter()
            .all(|b| !matches!(b.owner(), Owner::Ours(_))));
    }
}
