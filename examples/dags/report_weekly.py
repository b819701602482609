"""A DAG written in Python: the @task API wires dependencies and XCom from ordinary calls."""

from pipeline_core import DAG, shell_task, task

with DAG(
    "report_weekly",
    description="Weekly report built from two sources",
    schedule="@weekly",
    start_date="2026-01-05",
    tags=["report", "example"],
) as dag:

    @task(retries=1)
    def fetch_sales() -> dict:
        return {"total": 1200, "currency": "EUR"}

    @task
    def fetch_costs() -> dict:
        return {"total": 700, "currency": "EUR"}

    @task
    def build_report(sales: dict, costs: dict) -> dict:
        return {"margin": sales["total"] - costs["total"], "currency": sales["currency"]}

    report = build_report(fetch_sales(), fetch_costs())
    report >> shell_task("publish", "echo 'margin: {{ xcom.build_report.return_value.margin }}'")
