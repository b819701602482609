import pytest

from pipeline_core.dag.expressions import ExpressionError, parse_condition

VALUES = {
    "xcom.t.return_value.rows": 3,
    "dag_run.conf.env": "prod",
    "xcom.t.return_value.tags": ["a"],
}


def evaluate(source: str) -> bool:
    return parse_condition(source).evaluate(lambda ref: VALUES[ref.text])


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ xcom.t.return_value.rows }} > 0", True),
        ("{{ xcom.t.return_value.rows }} >= 4", False),
        ("{{ xcom.t.return_value.rows }} == 3 and {{ dag_run.conf.env }} == 'prod'", True),
        ("{{ xcom.t.return_value.rows }} < 0 or {{ dag_run.conf.env }} != 'dev'", True),
        ("not {{ xcom.t.return_value.rows }} > 0", False),
        ("{{ dag_run.conf.env }} in ['prod', 'staging']", True),
        ("'a' not in {{ xcom.t.return_value.tags }}", False),
        ("0 < {{ xcom.t.return_value.rows }} < 10", True),
        ("true", True),
        ("false or null", False),
        ("-1 < 0", True),
    ],
)
def test_evaluate(source, expected):
    assert evaluate(source) is expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("__import__('os').system('id')", "Call"),
        ("{{ xcom.t.return_value.rows }}.__class__", "Attribute"),
        ("x > 1", "uses name 'x'"),
        ("1 +", "invalid condition"),
        ("[i for i in (1,)]", "ListComp"),
        ("lambda: 1", "Lambda"),
        ("1 + 1 == 2", "BinOp"),
        ("{{ xcom.t }} > 1", "needs xcom.<task>.<key>"),
        ("{{ xcom.t.v > 1", "unterminated"),
        ("", "non-empty"),
        ("{'a': 1}", "Dict"),
    ],
)
def test_refused(source, message):
    with pytest.raises(ExpressionError, match=message):
        parse_condition(source)


def test_type_errors_are_reported_as_expression_errors():
    condition = parse_condition("{{ dag_run.conf.env }} > 1")
    with pytest.raises(ExpressionError, match="cannot evaluate"):
        condition.evaluate(lambda ref: "text")


def test_references_are_exposed_in_order():
    condition = parse_condition("{{ run_id }} == 'x' and {{ xcom.a.b }} > 0")
    assert [r.text for r in condition.references] == ["run_id", "xcom.a.b"]
