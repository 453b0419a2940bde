//! Thread confinement (semantic 10): `Transaction`, `TransactionManager` and `Savepoint`
//! cannot be sent to another thread. Each `tests/ui/*.rs` moves one into
//! `std::thread::spawn` and must fail to compile with "cannot be sent between threads
//! safely".
//!
//! The `.stderr` files hold rustc's full message (rustc 1.95), which names the private
//! `Rc` field that makes the type `!Send`: after changing a handle's fields or upgrading
//! the toolchain, review the new message and regenerate them with
//! `TRYBUILD=overwrite cargo test -p transaction --test compile_fail`.

#[test]
fn thread_bound_handles_cannot_be_sent_to_another_thread() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
