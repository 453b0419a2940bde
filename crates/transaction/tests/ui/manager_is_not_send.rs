// A transaction manager is bound to its thread.
fn main() {
    let manager = transaction::TransactionManager::new();
    std::thread::spawn(move || drop(manager));
}
