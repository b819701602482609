import sys
import textwrap
from pathlib import Path

from pipeline_core.dag.bag import load_folder

EXAMPLES = Path(__file__).parents[2] / "examples" / "dags"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_examples_all_load():
    bag = load_folder(EXAMPLES)
    assert bag.errors == {}
    assert {"etl_daily", "fan_out", "hourly_health", "report_weekly"} <= set(bag.dags)


def test_one_broken_file_never_hides_the_others(tmp_path):
    write(tmp_path, "good.yaml", "tasks: {a: {}}")
    write(tmp_path, "nested/also_good.yml", "tasks: {b: {}}")
    broken = write(tmp_path, "broken.yaml", "tasks: {a: {depends_on: [zz]}}")
    write(tmp_path, "syntax.py", "x = (\n")
    write(tmp_path, "raises.py", "\n\nraise RuntimeError('boom')\n")
    write(tmp_path, "notes.txt", "ignored")
    write(tmp_path, ".hidden/secret.yaml", "tasks: {a: {}}")
    bag = load_folder(tmp_path)
    assert set(bag.dags) == {"good", "also_good"}
    assert set(bag.errors) == {
        str(broken),
        str(tmp_path / "syntax.py"),
        str(tmp_path / "raises.py"),
    }
    [issue] = bag.errors[str(tmp_path / "raises.py")]
    assert issue.message == "RuntimeError: boom"
    assert issue.line == 3
    [syntax] = bag.errors[str(tmp_path / "syntax.py")]
    assert syntax.message.startswith("SyntaxError")


def test_duplicate_dag_id_names_both_files(tmp_path):
    first = write(tmp_path, "a.yaml", "dag_id: same\ntasks: {a: {}}")
    second = write(tmp_path, "b.yaml", "dag_id: same\ntasks: {b: {}}")
    bag = load_folder(tmp_path)
    assert bag.dags["same"].fileloc == str(first)
    [issue] = bag.errors[str(second)]
    assert str(first) in issue.message and issue.file == str(second)
    assert "already defined" in issue.message


def test_python_dag_file_can_import_a_module_beside_it(tmp_path):
    write(tmp_path, "helpers_for_bag_test/__init__.py", "GREETING = 'hi'\n")
    write(
        tmp_path,
        "py_dag.py",
        """
        from helpers_for_bag_test import GREETING
        from pipeline_core import DAG, shell_task

        with DAG("py_dag", tags=[GREETING]) as dag:
            shell_task("say", "echo hi")
        """,
    )
    bag = load_folder(tmp_path)
    assert bag.errors == {}
    assert bag.dags["py_dag"].tags == ("hi",)
    assert str(tmp_path.resolve()) in sys.path


def test_invalid_python_dag_reports_its_issues(tmp_path):
    path = write(
        tmp_path,
        "bad_py.py",
        """
        from pipeline_core import DAG, noop_task

        with DAG("bad_py") as dag:
            noop_task("a", depends_on=["ghost"])
        """,
    )
    bag = load_folder(tmp_path)
    [issue] = bag.errors[str(path)]
    assert "unknown task 'ghost'" in issue.message


def test_missing_folder_is_an_error_not_a_crash(tmp_path):
    bag = load_folder(tmp_path / "nope")
    assert bag.dags == {}
    assert "does not exist" in next(iter(bag.errors.values()))[0].message
