// A savepoint is bound to its transaction's thread.
fn main() {
    let savepoint = transaction::TransactionManager::new()
        .begin()
        .unwrap()
        .savepoint(false)
        .unwrap();
    std::thread::spawn(move || drop(savepoint));
}
