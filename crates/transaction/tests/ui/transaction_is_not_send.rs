// A transaction is bound to the thread that began it.
fn main() {
    let txn = transaction::TransactionManager::new().begin().unwrap();
    std::thread::spawn(move || drop(txn));
}
