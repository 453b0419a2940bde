#!/usr/bin/env python3
"""The peer of `cargo bench -p transaction --bench commit` (begin_join_commit/2): Python's
`transaction` package (pip install 'transaction==5.1') doing begin, join two no-op data
managers that vote and finish, commit. Prints the median of 15 runs of 20,000 cycles, in
nanoseconds per cycle.

    python3 scripts/peer-transaction-cycle.py
"""
import statistics
import time
from importlib.metadata import version

import transaction
from zope.interface import implementer
from transaction.interfaces import IDataManager


@implementer(IDataManager)
class NoOp:
    transaction_manager = None

    def __init__(self, key):
        self.key = key

    def abort(self, txn):
        pass

    def tpc_begin(self, txn):
        pass

    def commit(self, txn):
        pass

    def tpc_vote(self, txn):
        pass

    def tpc_finish(self, txn):
        pass

    def tpc_abort(self, txn):
        pass

    def sortKey(self):
        return self.key


def main():
    manager = transaction.TransactionManager()
    a, b = NoOp("a"), NoOp("b")
    n = 20_000
    runs = []
    for _ in range(15):
        start = time.perf_counter_ns()
        for _ in range(n):
            txn = manager.begin()
            txn.join(a)
            txn.join(b)
            manager.commit()
        runs.append((time.perf_counter_ns() - start) / n)
    print(f"python transaction {version('transaction')}: "
          f"begin + join 2 + commit: {statistics.median(runs):.0f} ns per cycle (median of 15 runs of {n})")


if __name__ == "__main__":
    main()
