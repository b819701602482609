"""Load + validate + topologically sort generated DAGs of 1,000 / 10,000 / 100,000 tasks.

Each task depends on up to 3 random earlier tasks (so the graph is acyclic). Two paths are
timed: from YAML text (parse, validate, sort) and from an in-memory document (validate, sort).
Run: python benchmarks/bench_graph.py [--runs N]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, median_of

from pipeline_core.dag.graph import Graph
from pipeline_core.dag.spec import dag_from_spec
from pipeline_core.dag.yaml_loader import load_dag_text


def generate(n: int, seed: int = 7) -> dict[str, object]:
    rng = random.Random(seed)
    tasks: dict[str, object] = {}
    for i in range(n):
        deps = sorted({f"t{rng.randrange(i)}" for _ in range(3)}) if i else []
        tasks[f"t{i}"] = {"type": "noop", "depends_on": deps} if deps else {"type": "noop"}
    return {"dag_id": f"generated_{n}", "tasks": tasks}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="1000,10000,100000")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"{'tasks':>8} {'edges':>8} {'yaml s':>9} {'doc s':>9} {'sort s':>9} {'µs/task':>8}")
    for n in (int(s) for s in args.sizes.split(",")):
        document = generate(n)
        edges = sum(len(t.get("depends_on", [])) for t in document["tasks"].values())  # type: ignore[union-attr]
        text = yaml.safe_dump(document, sort_keys=False)

        def from_yaml(text: str = text) -> None:
            Graph.of(load_dag_text(text)).topological_order()

        def from_document(document: dict[str, object] = document) -> None:
            Graph.of(dag_from_spec(document)).topological_order()

        dag = dag_from_spec(document)
        yaml_s = median_of(args.runs, from_yaml)
        doc_s = median_of(args.runs, from_document)
        sort_s = median_of(args.runs, lambda dag=dag: Graph.of(dag).topological_order())
        per_task = yaml_s / n * 1e6
        print(f"{n:>8} {edges:>8} {yaml_s:>9.3f} {doc_s:>9.3f} {sort_s:>9.4f} {per_task:>8.1f}")


if __name__ == "__main__":
    main()
