"""The Grafana dashboard, built with grafana-foundation-sdk (Grafana's own typed builders, so
the JSON follows its schema) from the expressions in ``hwtune.observe.queries``.

``hwtune observe dashboard`` writes it to the chart (``charts/hwtune/dashboards/hwtune.json``,
shipped as a ConfigMap with the Grafana sidecar's ``grafana_dashboard`` label) and
``tests/observe/test_dashboard.py`` checks that the committed file is what the code builds.
The SDK is a development dependency (the ``dev`` extra), never the operator's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hwtune.observe.queries import PANELS, VARIABLES, Panel

__all__ = ["DASHBOARD_UID", "build_dashboard", "dashboard_json", "write_dashboard"]

DASHBOARD_UID = "hwtune-studies"
DATASOURCE_VAR = "datasource"


def _datasource() -> Any:
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    return DataSourceRef(type_val="prometheus", uid="${%s}" % DATASOURCE_VAR)


def _query(panel: Panel, ref: str = "A") -> Any:
    from grafana_foundation_sdk.builders import prometheus
    from grafana_foundation_sdk.models.prometheus import PromQueryFormat

    q = prometheus.Dataquery().expr(panel.expr).ref_id(ref).datasource(_datasource())
    if panel.kind == "xy":
        # one row per front point: an instant table, pivoted below to point x objective
        return q.instant().format(PromQueryFormat.TABLE)
    if panel.kind == "bars":
        return q.instant().legend_format(panel.legend)
    return q.range().legend_format(panel.legend)


def _xy_panel(panel: Panel) -> Any:
    from grafana_foundation_sdk.builders import xychart
    from grafana_foundation_sdk.models.dashboard import DataTransformerConfig
    from grafana_foundation_sdk.models.xychart import ScatterShow, SeriesMapping

    x, y = panel.x, panel.y
    series = (xychart.ScatterSeriesConfig().x(x).y(y).name("front").show(ScatterShow.POINTS))
    return (xychart.Panel().title(panel.title).description(panel.description)
            .datasource(_datasource()).with_target(_query(panel))
            # rows = front points, columns = objectives, cells = values
            .with_transformation(DataTransformerConfig(
                id_val="groupingToMatrix",
                options={"columnField": "objective", "rowField": "point", "valueField": "Value",
                         "emptyValue": "null"}))
            .series_mapping(SeriesMapping.MANUAL)
            .series([series])
            .height(10).span(12))


def _timeseries_panel(panel: Panel) -> Any:
    from grafana_foundation_sdk.builders import timeseries

    p = (timeseries.Panel().title(panel.title).description(panel.description)
         .datasource(_datasource()).with_target(_query(panel)).height(8).span(12))
    if panel.unit:
        p = p.unit(panel.unit)
    return p


def _bars_panel(panel: Panel) -> Any:
    from grafana_foundation_sdk.builders import bargauge

    return (bargauge.Panel().title(panel.title).description(panel.description)
            .datasource(_datasource()).with_target(_query(panel)).height(8).span(12))


def build_dashboard() -> Any:
    """The dashboard as the SDK's model."""
    from grafana_foundation_sdk.builders import dashboard
    from grafana_foundation_sdk.models.dashboard import VariableRefresh, VariableSort

    board = (dashboard.Dashboard("hwtune studies").uid(DASHBOARD_UID)
             .description("Pareto fronts, hypervolume, spend and trials of hwtune TuningStudies "
                          "(metrics: docs/metrics.md)")
             .tags(["hwtune", "hyperparameter-tuning"]).time("now-6h", "now").refresh("30s")
             .timezone("browser"))
    board = board.with_variable(
        dashboard.DatasourceVariable(DATASOURCE_VAR).label("Prometheus").type("prometheus"))
    for name, query in VARIABLES.items():
        board = board.with_variable(
            dashboard.QueryVariable(name).label(name.capitalize()).query(query)
            .datasource(_datasource()).refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC))
    builders = {"xy": _xy_panel, "timeseries": _timeseries_panel, "bars": _bars_panel}
    for panel in PANELS:
        board = board.with_panel(builders[panel.kind](panel))
    return board.build()


def dashboard_json() -> str:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    return json.dumps(build_dashboard(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def write_dashboard(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dashboard_json())
    return path
