import pytest

from pipeline_core.dag.templates import (
    TemplateError,
    connection_field,
    find_references,
    iter_strings,
    parse_reference,
    parse_template,
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
        ("var", "needs var.<key>"),
        ("conn.db", "needs conn.<id>.<field>"),
        ("conn.db.hostname", "needs conn.<id>.<field>"),
        ("conn.db.extra", "needs conn.<id>.<field>"),
        ("ds | upper", "not a plain reference"),
        ("__import__('os')", "not a plain reference"),
    ],
)
def test_bad_references(inner, message):
    with pytest.raises(TemplateError, match=message):
        parse_reference(inner)


@pytest.mark.parametrize(
    ("inner", "field"),
    [
        ("conn.db.host", ("host",)),
        ("conn.warehouse.eu.password", ("password",)),
        ("conn.db.extra.sslmode", ("extra", "sslmode")),
        ("conn.db.uri", ("uri",)),
    ],
)
def test_connection_references_name_a_field_after_an_id_that_may_hold_dots(inner, field):
    assert connection_field(parse_reference(inner).parts) == field


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


def test_several_templates_in_one_string_render_as_text():
    values = {"run_id": "r1", "task_id": "t", "try_number": 2}
    text = "{{ run_id }} {{ task_id }} {{ try_number }}"
    assert render(text, lambda r: values[r.text]) == "r1 t 2"
    assert render("  {{ try_number }}  ", lambda r: values[r.text]) == 2


@pytest.mark.parametrize(
    "text",
    ["{{ run_id }} {{ task_id }}", "a {{ ds }} b", "{{ ds }}{{ ds }}", "plain", "{{ ds }}"],
)
def test_validation_and_rendering_share_one_parser(text):
    """What find_references accepts, render renders; what it rejects, render rejects."""
    pieces = parse_template(text)
    refs = [p for p in pieces if not isinstance(p, str)]
    assert [r.text for r in find_references(text)] == [r.text for r in refs]
    rendered = render(text, lambda r: f"<{r.text}>")
    assert rendered in ("<ds>", "".join(p if isinstance(p, str) else f"<{p.text}>" for p in pieces))


@pytest.mark.parametrize("text", ["{{ ds", "{{ ds }} {{", "x }} {{ run_id", "{{ a {{ b }}"])
def test_malformed_templates_fail_in_validation_and_rendering_alike(text):
    with pytest.raises(TemplateError):
        list(find_references(text))
    with pytest.raises(TemplateError):
        render(text, lambda r: "v")
