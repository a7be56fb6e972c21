"""The Grafana dashboard "ftscale / Scaling studies", as code (Grafana's grafana-foundation-sdk).

    $(scripts/python-env.sh) monitoring/dashboard.py           # writes dashboards/ftscale-studies.json
    $(scripts/python-env.sh) monitoring/dashboard.py --check   # exit 1 if the committed JSON is stale

(with `operator/` on PYTHONPATH, as the Makefile sets it). helm/ftscale/sync-files.sh runs it and
copies the JSON into the chart, whose ConfigMap Grafana's dashboard sidecar loads.

What a reader sees, top to bottom: study progress (share of runs done, runs by phase, failures,
fit state), live training per run (train/dev loss, tokens/s, GPU memory, steps, learning rate),
the scaling curves as they fill in (final test loss against finetuning data size, one curve per
model × method × PET size, and the same as a table), the fitted law's parameters, and the
operator's own health.

Every metric is named through `metric()`, which looks it up in ftscale.metric_names: a metric
renamed there fails here, and tests/helm/test_helm_monitoring.py checks every expression of the
generated JSON against the catalogue again (names and label names), and with promtool for syntax.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import bargauge, dashboard, prometheus, stat, table, timeseries, xychart
from grafana_foundation_sdk.builders.common import (
    StackingConfig,
    TableSortByFieldState,
    VizLegendOptions,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, dashboard as dm
from grafana_foundation_sdk.models import xychart as xym
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from ftscale.metric_names import BY_NAME

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "dashboards" / "ftscale-studies.json"

# A stable uid keeps links and bookmarks valid across upgrades of the chart.
DASHBOARD_UID = "ftscale-studies"
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")

# Every study-level query is filtered by the two dashboard variables. Trainer series get their
# `namespace` from the scraped pod (the PodMonitor), operator series carry the study's own.
STUDY_FILTER = 'namespace=~"$namespace", study=~"$study"'

# The operator's scrape job: the ServiceMonitor names it so whatever the Helm release is called.
OPERATOR_JOB = "ftscale-operator"


def metric(name: str) -> str:
    """The metric's name, after checking ftscale.metric_names exports it (KeyError otherwise)."""
    return BY_NAME[name].name


def series(name: str, suffix: str = "") -> str:
    """A histogram's series (`_bucket`, `_sum`, `_count`), checked against the catalogue."""
    m = BY_NAME[name]
    if suffix and m.kind != "histogram":
        raise ValueError(f"{name} is a {m.kind}, it has no {suffix} series")
    return m.name + suffix


def query(expr: str, legend: str = "", ref: str = "A", instant: bool = False,
          table_format: bool = False) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if legend:
        q = q.legend_format(legend)
    if instant:
        q = q.instant()
    else:
        q = q.range()
    if table_format:
        q = q.format(PromQueryFormat.TABLE)
    return q


def transformation(id_val: str, **options: object) -> dm.DataTransformerConfig:
    return dm.DataTransformerConfig(id_val=id_val, options=options)


def value_text(value: str, text: str, color: str) -> dm.ValueMap:
    return dm.ValueMap(options={value: dm.ValueMappingResult(text=text, color=color)})


RUN_LEGEND = "{{model}} {{method}} D={{data_size}} ({{run}})"


# ---------------------------------------------------------------------------------- progress
def progress_panels() -> list:
    terminal = f'{metric("ftscale_study_runs")}{{{STUDY_FILTER}, phase=~"Succeeded|Failed"}}'
    done = (
        f"sum by (namespace, study) ({terminal})"
        f" / sum by (namespace, study) ({metric('ftscale_study_runs_expected')}{{{STUDY_FILTER}}})"
    )
    return [
        bargauge.Panel()
        .title("Study progress")
        .description("Share of each study's runs that reached a terminal phase (Succeeded or Failed).")
        .with_target(query(done, "{{namespace}}/{{study}}", instant=True))
        .unit("percentunit").min(0).max(1)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .orientation(common.VizOrientation.HORIZONTAL)
        .span(8).height(8),
        timeseries.Panel()
        .title("Runs by phase")
        .description("Runs of the selected studies by phase: Pending (no Job yet), Queued (Job "
                     "suspended, e.g. by Kueue), Running, Succeeded, Failed.")
        .with_target(query(
            f"sum by (phase) ({metric('ftscale_study_runs')}{{{STUDY_FILTER}}})", "{{phase}}"))
        .stacking(StackingConfig().mode(common.StackingMode.NORMAL))
        .fill_opacity(40).line_width(1).unit("short").min(0).decimals(0)
        .span(8).height(8),
        stat.Panel()
        .title("Fit")
        .description("Whether the study's scaling law is fitted (status condition Fitted) or its "
                     "fit Job failed.")
        .with_target(query(
            f"max by (namespace, study) ({metric('ftscale_study_fitted')}{{{STUDY_FILTER}}})"
            f" - 2 * max by (namespace, study) ({metric('ftscale_study_fit_failed')}{{{STUDY_FILTER}}})",
            "{{namespace}}/{{study}}", instant=True))
        .mappings([
            value_text("1", "Fitted", "green"),
            value_text("0", "not yet", "text"),
            value_text("-2", "fit failed", "red"),
            value_text("-1", "fit failed", "red"),
        ])
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .span(4).height(8),
        stat.Panel()
        .title("Last run finished")
        .description("Time since a run of the study last reached a terminal phase.")
        .with_target(query(
            f"time() - max by (namespace, study) "
            f"({metric('ftscale_study_last_progress_timestamp_seconds')}{{{STUDY_FILTER}}})",
            "{{namespace}}/{{study}}", instant=True))
        .unit("s").text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .span(4).height(8),
        stat.Panel()
        .title("Run failures by reason")
        .description("Runs that ended Failed, by reason (OOMKilled, DeadlineExceeded, "
                     "InvalidConfig, ...), counted by the operator since it started.")
        .with_target(query(
            f"sum by (reason) ({metric('ftscale_run_failures_total')}{{{STUDY_FILTER}}})",
            "{{reason}}", instant=True))
        .no_value("none")
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .color_scheme(dashboard.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color("red"))
        .span(16).height(4),
        stat.Panel()
        .title("GPU-hours spent")
        .description("GPU-hours (wall time × GPUs) held by the runs that finished in the "
                     "dashboard's time range — what spec.budget.gpuHours is spent on (the "
                     "study's total is status.gpuHoursSpent).")
        .with_target(query(
            f"sum by (namespace, study) (increase("
            f"{metric('ftscale_study_gpu_seconds_total')}{{{STUDY_FILTER}}}[$__range])) / 3600",
            "{{namespace}}/{{study}}", instant=True))
        .unit("short").decimals(2)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .span(8).height(4),
    ]


# ------------------------------------------------------------------------------ live training
def trainer_panel(title: str, name: str, unit: str, description: str,
                  width: int = 12) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .with_target(query(f"{metric(name)}{{{STUDY_FILTER}}}", RUN_LEGEND))
        .unit(unit)
        .span(width).height(8)
    )


def training_panels() -> list:
    return [
        trainer_panel("Train loss per run", "ftscale_trainer_train_loss", "none",
                      "Training loss (nats per target token) of each running run, at its last "
                      "logged step."),
        trainer_panel("Dev loss per run", "ftscale_trainer_eval_loss", "none",
                      "Dev loss (nats per target token) at each run's evaluations; the best one "
                      "is the checkpoint the run reports."),
        trainer_panel("Training throughput", "ftscale_trainer_tokens_per_second", "short",
                      "Tokens per second over each run's last logging interval."),
        trainer_panel("GPU memory", "ftscale_trainer_gpu_memory_bytes", "bytes",
                      "Peak GPU memory torch allocated in each run's process."),
        trainer_panel("Optimizer steps", "ftscale_trainer_step", "short",
                      "Optimizer steps each run has done.", width=8),
        trainer_panel("Tokens seen", "ftscale_trainer_tokens_seen_total", "short",
                      "Tokens each run has fed forward in training so far.", width=8),
        trainer_panel("Learning rate", "ftscale_trainer_learning_rate", "none",
                      "Each run's current learning rate (warmup and decay schedules).", width=8),
    ]


# ----------------------------------------------------------------------------- scaling curves
def scaling_panels() -> list:
    losses = f"{metric('ftscale_run_test_loss')}{{{STUDY_FILTER}}}"
    curve = (
        xychart.Panel()
        .title("Final test loss vs finetuning data size")
        .description(
            "One point per finished condition (mean over seeds), one curve per model × method × "
            "PET size: the scaling curves L(D_f) of the study as they fill in. The x axis is "
            "logarithmic, as in the paper's figures.")
        .with_target(query(losses, instant=True, table_format=True))
        # Prometheus labels are strings: make data_size a number for the x axis, sort along it,
        # and split the table into one frame (one curve) per model/method/PET size.
        .with_transformation(transformation(
            "convertFieldType",
            conversions=[{"targetField": "data_size", "destinationType": "number"}]))
        .with_transformation(transformation("sortBy", sort=[{"field": "data_size"}]))
        .with_transformation(transformation(
            "partitionByValues", fields=["model", "method", "pet_size"], keepFields=False))
        .with_transformation(transformation(
            "organize", excludeByName={"Time": True, "namespace": True, "study": True,
                                       "__name__": True}))
        .mapping(xym.SeriesMapping.AUTO)
        .series([
            xychart.XYSeriesConfig()
            .x(xychart.XychartXYSeriesConfigX().matcher(
                xychart.MatcherConfig().id("byName").options("data_size")))
            .y(xychart.XychartXYSeriesConfigY().matcher(
                xychart.MatcherConfig().id("byName").options("Value"))),
        ])
        .show(xym.XYShowMode.POINTS_AND_LINES)
        .legend(VizLegendOptions().show_legend(True).display_mode(common.LegendDisplayMode.LIST)
                .placement(common.LegendPlacement.BOTTOM))
        .unit("none").axis_label("test loss (nats/token)")
        # Only the x axis (data size) is logarithmic; the loss keeps a linear axis.
        .override_by_name("data_size", [
            dm.DynamicConfigValue(id_val="custom.scaleDistribution",
                                  value={"type": "log", "log": 2}),
            dm.DynamicConfigValue(id_val="custom.axisLabel", value="finetuning examples D_f"),
        ])
        .span(14).height(10)
    )
    finals = (
        table.Panel()
        .title("Final test loss by condition")
        .description("Every finished condition's test loss (mean over seeds).")
        .with_target(query(losses, instant=True, table_format=True))
        .with_transformation(transformation(
            "organize",
            excludeByName={"Time": True, "__name__": True},
            renameByName={"Value": "test loss"},
            indexByName={"namespace": 0, "study": 1, "model": 2, "method": 3, "pet_size": 4,
                         "data_size": 5, "Value": 6}))
        .sort_by([TableSortByFieldState().display_name("data_size")])
        .decimals(4)
        .span(10).height(10)
    )
    fit = (
        table.Panel()
        .title("Fitted scaling-law parameters")
        .description(
            "L = A·X^-α·D_f^-β + E per method, factor X (model size, pretraining tokens or PET "
            "size) and law form, as the fit Job reported them (unrounded).")
        .with_target(query(
            f"{metric('ftscale_fit_parameter')}{{{STUDY_FILTER}}}", instant=True, table_format=True))
        .with_transformation(transformation(
            "organize",
            excludeByName={"Time": True, "__name__": True},
            indexByName={"namespace": 0, "study": 1, "method": 2, "factor": 3, "form": 4,
                         "parameter": 5, "Value": 6}))
        .decimals(6)
        .span(24).height(8)
    )
    return [curve, finals, fit]


# ---------------------------------------------------------------------------------- operator
def operator_panels() -> list:
    def p95(name: str) -> str:
        return (f"histogram_quantile(0.95, sum by (le) "
                f"(rate({series(name, '_bucket')}[$__rate_interval])))")

    return [
        stat.Panel()
        .title("Operator replicas up")
        .description("Operator pods Prometheus scrapes successfully (one is the leader).")
        .with_target(query(f'sum(up{{job="{OPERATOR_JOB}"}})', instant=True))
        .thresholds(dashboard.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps([
            dm.Threshold(value=None, color="red"), dm.Threshold(value=1, color="green")]))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .span(4).height(7),
        timeseries.Panel()
        .title("Reconcile and harvest latency (p95)")
        .description("Time one reconcile pass takes, and the delay from a run Job's completion "
                     "to its result in the study's status.")
        .with_target(query(p95("ftscale_reconcile_duration_seconds"), "reconcile", ref="A"))
        .with_target(query(p95("ftscale_harvest_latency_seconds"), "harvest", ref="B"))
        .unit("s")
        .span(10).height(7),
        timeseries.Panel()
        .title("Reconcile errors")
        .description("Reconcile passes that raised, per second, by error type.")
        .with_target(query(
            f"sum by (error) (rate({metric('ftscale_reconcile_errors_total')}[$__rate_interval]))",
            "{{error}}"))
        .unit("ops").min(0)
        .span(10).height(7),
    ]


# ------------------------------------------------------------------------------- the dashboard
def variables() -> list:
    expected = metric("ftscale_study_runs_expected")
    return [
        dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        dashboard.QueryVariable("namespace").label("Namespace")
        .datasource(DATASOURCE)
        .query({"query": f"label_values({expected}, namespace)", "refId": "namespace"})
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True).include_all(True).all_value(".*"),
        dashboard.QueryVariable("study").label("Study")
        .datasource(DATASOURCE)
        .query({"query": f'label_values({expected}{{namespace=~"$namespace"}}, study)',
                "refId": "study"})
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True).include_all(True).all_value(".*"),
    ]


def build() -> dm.Dashboard:
    board = (
        dashboard.Dashboard("ftscale / Scaling studies")
        .uid(DASHBOARD_UID)
        .description("LLM finetuning scaling studies run by the ftscale operator: progress, live "
                     "training, the scaling curves and the fitted law L = A·X^-α·D_f^-β + E.")
        .tags(["ftscale", "ml", "scaling-laws"])
        .refresh("30s")
        .time("now-6h", "now")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .readonly()
    )
    for variable in variables():
        board = board.with_variable(variable)
    for title, panels in (
        ("Study progress", progress_panels()),
        ("Live training (per run)", training_panels()),
        ("Scaling curves and fitted law", scaling_panels()),
        ("Operator", operator_panels()),
    ):
        board = board.with_row(dashboard.Row(title))
        for panel in panels:
            board = board.with_panel(panel)
    return board.build()


def render() -> str:
    """The dashboard as the JSON Grafana imports (stable key order, trailing newline)."""
    return json.dumps(build(), cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the committed JSON differs from the code")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="where to write the JSON")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run monitoring/dashboard.py "
                  "(or helm/ftscale/sync-files.sh)", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
