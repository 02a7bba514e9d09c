"""Every PromQL expression we ship, in one place: the Grafana dashboard's panels, the alert rules
of the chart's PrometheusRule, and the PNG renderer all read them from here, and the real-
Prometheus test (tests/observe/test_prometheus.py) runs each one against a live scrape.

Dashboard expressions use Grafana's variables ``$namespace``, ``$study``, ``$quality`` (the
quality objective) and ``$__rate_interval``; ``substitute`` fills them in for tools that talk to
Prometheus directly. Alert expressions carry Helm placeholders for their thresholds
(``{budget_fraction}`` ...), filled by ``alert_rules(values)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

__all__ = ["ALERTS", "PANELS", "VARIABLES", "Alert", "Panel", "alert_rules", "substitute"]

SEL = 'namespace="$namespace",study="$study"'


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    kind: str  # "xy" (front scatter), "timeseries", "bars" (latest value per series)
    expr: str
    unit: str = ""
    legend: str = ""
    x: str = ""  # xy: the objective on the x axis (the pivot's column)
    y: str = ""
    description: str = ""


# The fronts are instant queries pivoted by point (rows) x objective (columns): one row per
# exported front point, so an XY panel draws each point once.
PANELS: tuple[Panel, ...] = (
    Panel("front_cost_runtime", "Pareto front: cost vs runtime", "xy",
          f'hwtune_study_front_point{{{SEL},objective=~"cost|runtime"}}', x="cost", y="runtime",
          description="Each exported front point's cost (USD) and runtime (s) at its last report."),
    # The quality objective is renamed "quality" so the panel's y field has a fixed name.
    Panel("front_quality_cost", "Pareto front: quality vs cost", "xy",
          f'label_replace(hwtune_study_front_point{{{SEL},objective="$quality"}}, "objective", '
          f'"quality", "objective", "(.*)") or hwtune_study_front_point{{{SEL},objective="cost"}}',
          x="cost", y="quality",
          description="Each exported front point's cost (USD) and quality objective ($quality)."),
    Panel("hypervolume", "Hypervolume of the front", "timeseries",
          f"hwtune_study_hypervolume{{{SEL}}}", legend="{{study}}"),
    Panel("spend_by_pool", "Spend by pool and GPU type (USD)", "timeseries",
          f"sum by (pool, gpu_type) (hwtune_study_spent_usd{{{SEL}}})", unit="currencyUSD",
          legend="{{pool}} ({{gpu_type}})"),
    Panel("gpu_hours_by_pool", "GPU-hours by pool", "timeseries",
          f"sum by (pool, gpu_type) (hwtune_study_gpu_seconds{{{SEL}}}) / 3600", unit="h",
          legend="{{pool}} ({{gpu_type}})"),
    Panel("budget_used", "Budget used (fraction of maxCostUSD)", "timeseries",
          f"sum by (namespace, study) (hwtune_study_spent_usd{{{SEL}}}) / on (namespace, study) "
          f"hwtune_study_budget_usd{{{SEL}}}", unit="percentunit", legend="{{study}}"),
    Panel("trials_by_phase", "Trials by phase", "timeseries",
          f"sum by (phase) (hwtune_study_trials{{{SEL}}})", legend="{{phase}}"),
    Panel("trial_events", "Launches, resumes, pauses, stops, failures, preemptions (total)",
          "bars",
          "label_replace(sum by (__name__) ({__name__=~\"hwtune_trial_(launches|resumes|pauses|"
          f"stops|failures|preemptions)_total\",{SEL}}}), \"event\", \"$1\", \"__name__\", "
          "\"hwtune_trial_(.*)_total\")", legend="{{event}}"),
    Panel("decision_latency", "Report-to-decision latency (p99)", "timeseries",
          "histogram_quantile(0.99, sum by (le) (rate(hwtune_report_decision_seconds_bucket"
          f"{{{SEL}}}[$__rate_interval])))", unit="s", legend="p99"),
    Panel("reconcile_latency", "Reconcile pass latency (p99)", "timeseries",
          "histogram_quantile(0.99, sum by (le) (rate(hwtune_reconcile_seconds_bucket"
          f"{{{SEL}}}[$__rate_interval])))", unit="s", legend="p99"),
)

# Template variables: name -> label_values query (Grafana's query variable syntax).
VARIABLES: Mapping[str, str] = {
    "namespace": "label_values(hwtune_study_trials, namespace)",
    "study": 'label_values(hwtune_study_trials{namespace="$namespace"}, study)',
    "quality": 'label_values(hwtune_study_front_point{namespace="$namespace",study="$study",'
               'objective!~"cost|runtime"}, objective)',
}


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str  # with {placeholders} for thresholds
    value: str  # the expression before its threshold: what the test checks against the study
    for_: str
    severity: str
    summary: str


ALERTS: tuple[Alert, ...] = (
    Alert("HwtuneStudyBudgetNearlySpent",
          "sum by (namespace, study) (hwtune_study_spent_usd) / on (namespace, study) "
          "hwtune_study_budget_usd > {budget_fraction}",
          "sum by (namespace, study) (hwtune_study_spent_usd) / on (namespace, study) "
          "hwtune_study_budget_usd",
          "1m", "warning",
          "Study {{ $labels.namespace }}/{{ $labels.study }} has spent "
          "{{ $value | humanizePercentage }} of its cost budget."),
    Alert("HwtuneTrialsFailing",
          "sum by (namespace, study) (increase(hwtune_trial_failures_total[15m])) "
          "/ clamp_min(sum by (namespace, study) (increase(hwtune_trial_launches_total[15m])), 1) "
          "> {failure_ratio}",
          "sum by (namespace, study) (hwtune_trial_failures_total) "
          "/ clamp_min(sum by (namespace, study) (hwtune_trial_launches_total), 1)",
          "10m", "warning",
          "{{ $value | humanizePercentage }} of the trials launched in 15 minutes by "
          "{{ $labels.namespace }}/{{ $labels.study }} failed."),
    Alert("HwtuneDecisionsSlow",
          "histogram_quantile(0.99, sum by (namespace, study, le) "
          "(rate(hwtune_report_decision_seconds_bucket[5m]))) > {decision_seconds}",
          "histogram_quantile(0.99, sum by (namespace, study, le) "
          "(rate(hwtune_report_decision_seconds_bucket[5m])))",
          "5m", "warning",
          "p99 report-to-decision latency of {{ $labels.namespace }}/{{ $labels.study }} is "
          "{{ $value | humanizeDuration }}."),
    Alert("HwtuneSurrogateDown",
          "sum by (namespace, study) (increase(hwtune_surrogate_fallbacks_total[10m])) > 0",
          "sum by (namespace, study) (hwtune_surrogate_fallbacks_total)",
          "5m", "warning",
          "{{ $labels.namespace }}/{{ $labels.study }} suggests without the surrogate (the "
          "service is down or too slow): searches fall back to model-free proposals."),
)

DEFAULT_THRESHOLDS: Mapping[str, float] = {
    "budget_fraction": 0.9, "failure_ratio": 0.5, "decision_seconds": 1}


def alert_rules(thresholds: Mapping[str, object] | None = None) -> list[dict]:
    """The rule group's ``rules`` with thresholds filled in (numbers, or Helm expressions when
    the chart's template is generated)."""
    values = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    return [{"alert": a.name, "expr": a.expr.format(**values), "for": a.for_,
             "labels": {"severity": a.severity}, "annotations": {"summary": a.summary}}
            for a in ALERTS]


def substitute(expr: str, *, namespace: str, study: str, quality: str = "",
               rate_interval: str = "1m") -> str:
    """A dashboard expression with Grafana's variables filled in."""
    return (expr.replace("$namespace", namespace).replace("$study", study)
            .replace("$quality", quality).replace("$__rate_interval", rate_interval))
