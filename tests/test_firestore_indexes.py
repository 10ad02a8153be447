"""Every query the code issues on the tasks collection is served by an index: Firestore's automatic single-field
indexes for a query on one field, a composite index declared in terraform/firestore.tf for any other.

The queries are recorded, not listed by hand: the StateStore's read methods run over a fake collection that
records each query's filters and orders (a disjunction is one query per branch, as Firestore plans it). A method
of the task adapter that builds a query and is not exercised here fails the test, so a new query cannot slip in
without its index.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import hcl2
import pendulum
from google.cloud.firestore_v1.base_query import BaseCompositeFilter, FieldFilter

from shared.adapters import firestore_tasks
from shared.adapters.firestore_state import StateStore

TERRAFORM = Path(__file__).resolve().parents[1] / "terraform" / "firestore.tf"
EQUALITY = {"==", "in", "array_contains", "array_contains_any"}


@dataclass(frozen=True)
class Shape:
    """A query's equality fields (a set) and its ordered fields (inequality first, then order_by, as Firestore
    orders by the inequality field first)."""

    equality: frozenset[str]
    ordered: tuple[str, ...]

    @property
    def fields(self) -> set[str]:
        return set(self.equality) | set(self.ordered)


class _Recorder:
    def __init__(self) -> None:
        self.shapes: list[Shape] = []
        self.methods: set[str] = set()


class _Query:
    def __init__(self, recorder: _Recorder, filters: tuple[Any, ...] = (), orders: tuple[str, ...] = ()) -> None:
        self.recorder, self.filters, self.orders = recorder, filters, orders

    def where(self, *, filter: Any) -> _Query:
        return _Query(self.recorder, (*self.filters, filter), self.orders)

    def order_by(self, field: str, **_: Any) -> _Query:
        return _Query(self.recorder, self.filters, (*self.orders, field))

    def limit(self, _: int) -> _Query:
        return self

    def _record(self) -> None:
        branches: list[tuple[FieldFilter, ...]] = [()]
        for item in self.filters:
            if isinstance(item, BaseCompositeFilter):  # Or: one query per branch
                branches = [(*b, leaf) for b in branches for leaf in item.filters]
            else:
                branches = [(*b, item) for b in branches]
        for branch in branches:
            equality = frozenset(f.field_path for f in branch if f.op_string in EQUALITY)
            ranged = tuple(dict.fromkeys(f.field_path for f in branch if f.op_string not in EQUALITY))
            ordered = tuple(dict.fromkeys((*ranged, *self.orders)))
            self.recorder.shapes.append(Shape(equality, ordered))

    def stream(self) -> Iterator[Any]:
        self._record()
        return iter(())

    def count(self, **_: Any) -> Any:
        query = self

        class _Aggregation:
            def get(self) -> list[list[Any]]:
                query._record()
                return [[SimpleNamespace(value=0)]]

        return _Aggregation()

    def document(self, doc_id: str) -> Any:
        return SimpleNamespace(id=doc_id, get=lambda: SimpleNamespace(exists=False))


def _declared() -> list[tuple[str, ...]]:
    options = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
    with open(TERRAFORM) as handle:
        parsed = hcl2.load(handle, serialization_options=options)
    indexes = next(block["task_indexes"] for block in parsed["locals"] if "task_indexes" in block)
    return [tuple(fields) for fields in indexes.values()]


def serves(index: tuple[str, ...], shape: Shape) -> bool:
    """A composite index serves a query when it holds the equality fields first (in any order), then the ordered
    fields in their order, and nothing else."""
    cut = len(shape.equality)
    return set(index[:cut]) == shape.equality and index[cut:] == shape.ordered


def _recorded() -> _Recorder:
    recorder = _Recorder()
    store = StateStore.__new__(StateStore)
    store._tasks = _Query(recorder)
    store.client = SimpleNamespace(get_all=lambda refs: iter(()))
    low = pendulum.datetime(2026, 1, 1, tz="UTC")
    calls = {
        "next_pending": lambda: store.next_pending("p:i", limit=1),
        "pending_from": lambda: store.pending_from("p:i", low),
        "tasks_in_state": lambda: (store.tasks_in_state("failed"), store.tasks_in_state("pending", instance="p:i")),
        "unfinalized": lambda: store.unfinalized("p:i"),
        "has_open_tasks": lambda: store.has_open_tasks("p:i"),
        "tasks_from": lambda: store.tasks_from(low),
        "all_tasks": lambda: (store.all_tasks(), store.all_tasks(source="shop")),
        "count_tasks": lambda: store.count_tasks("pending", source="shop"),
        "tasks_to_show": store.tasks_to_show,
        "requeue_failed": lambda: store.requeue_failed(),
    }
    for name, call in calls.items():
        call()
        recorder.methods.add(name)
    return recorder


def _methods_that_query() -> set[str]:
    """The task adapter's methods whose body builds a query (`_query(...)`, `.where(...)` or `.count(...)`)."""
    tree = ast.parse(inspect.getsource(firestore_tasks))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            calls = {
                n.func.attr for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            }
            if calls & {"_query", "where", "count", "tasks_in_state"}:
                found.add(node.name)
    return found


def test_every_query_on_the_tasks_collection_is_served_by_an_index() -> None:
    recorder = _recorded()
    declared = _declared()
    unserved = sorted(
        {f"{sorted(s.equality)} then {list(s.ordered)}" for s in recorder.shapes if len(s.fields) > 1
         and not any(serves(index, s) for index in declared)}
    )  # fmt: skip
    assert not unserved, f"declare a composite index in terraform/firestore.tf (local.task_indexes) for: {unserved}"
    assert len(recorder.shapes) >= 12


def test_every_method_that_queries_tasks_is_recorded() -> None:
    missing = _methods_that_query() - _recorded().methods
    assert not missing, f"add {sorted(missing)} to the recorded calls of this test"


def test_no_declared_index_is_unused() -> None:
    shapes = _recorded().shapes
    unused = [index for index in _declared() if not any(serves(index, s) for s in shapes)]
    assert not unused, f"no query uses {unused}: remove it from terraform/firestore.tf"


def test_the_rule_tells_a_missing_index_from_a_served_query() -> None:
    worker = Shape(frozenset({"state", "instance"}), ("order_key",))
    assert serves(("instance", "state", "order_key"), worker)
    assert not serves(("instance", "state"), worker)
    assert not serves(("instance", "order_key", "state"), worker)
    assert not serves(("instance", "state", "finalized"), Shape(frozenset({"instance", "state"}), ()))
