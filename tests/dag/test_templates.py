import pytest

from pipeline_core.dag.templates import (
    TemplateError,
    find_references,
    iter_strings,
    parse_reference,
    render,
)


def test_references_are_found():
    refs = list(find_references("{{ ds }}/{{xcom.extract.return_value.rows}} {{ dag_run.conf.a }}"))
    assert [r.parts for r in refs] == [
        ("ds",),
        ("xcom", "extract", "return_value", "rows"),
        ("dag_run", "conf", "a"),
    ]


@pytest.mark.parametrize(
    ("inner", "message"),
    [
        ("", "empty template"),
        ("xcom", "needs xcom.<task>.<key>"),
        ("dag_run.x", "needs dag_run.conf.<key>"),
        ("ds.year", "ds has no fields"),
        ("secret", "unknown name 'secret'"),
        ("ds | upper", "not a plain reference"),
        ("__import__('os')", "not a plain reference"),
    ],
)
def test_bad_references(inner, message):
    with pytest.raises(TemplateError, match=message):
        parse_reference(inner)


def test_xcom_task_with_dots_in_its_id():
    ref = parse_reference("xcom.group.extract.return_value.rows")
    assert ref.xcom_task({"group.extract", "group"}) == ("group.extract", ("return_value", "rows"))
    with pytest.raises(TemplateError, match="unknown task"):
        ref.xcom_task({"other"})


def test_render_keeps_native_value_for_a_whole_template():
    values = {"xcom.a.return_value": {"rows": 3}, "ds": "2026-01-01"}
    assert render("{{ xcom.a.return_value }}", lambda r: values[r.text]) == {"rows": 3}
    assert render("day={{ ds }} v={{ xcom.a.return_value }}", lambda r: values[r.text]) == (
        'day=2026-01-01 v={"rows": 3}'
    )
    assert render("no templates", lambda r: 1 / 0) == "no templates"


def test_iter_strings_reports_paths():
    assert list(iter_strings({"a": ["x", {"b": "y"}], "n": 1})) == [
        (".a[0]", "x"),
        (".a[1].b", "y"),
    ]
