"""The output collector: lines in, the reports an SDK trainer would have sent out."""

from __future__ import annotations

import pytest

from hwtune.api.crd import MetricsCollectorSpec, parse_spec
from hwtune.report.collector import CollectedReport, LineCollector, make_collector


def reports(collector: LineCollector, text: str) -> list[tuple[int, dict[str, float]]]:
    got = collector.feed_text(text) + collector.close()
    return [(r.resource, r.metrics) for r in got]


def test_stdout_pairs_counted_levels() -> None:
    c = LineCollector("stdout", objectives=["loss"])
    text = ("starting, --lr=0.1 loss is unknown\n"  # no loss=: ignored; lr is not wanted
            "epoch 1: loss=0.9\n"
            "loss = 5e-1 accuracy=0.7\n"
            "loss=nan\n"  # not a finite number: no report
            "loss=0.25")  # last line without newline: read at close
    assert reports(c, text) == [(1, {"loss": 0.9}), (2, {"loss": 0.5}), (3, {"loss": 0.25})]


def test_stdout_group_waits_for_every_objective_and_the_resource_metric() -> None:
    c = LineCollector("stdout", objectives=["loss", "acc"], resource_metric="epoch")
    text = ("epoch=1\nloss=0.9\nacc=0.1\n"   # one group over three lines
            "loss=0.8 acc=0.2\n"            # no new epoch yet: waits
            "epoch=2\n"
            "epoch=3 loss=0.7 acc=0.3\n")
    assert reports(c, text) == [(1, {"loss": 0.9, "acc": 0.1}),
                                (2, {"loss": 0.8, "acc": 0.2}),
                                (3, {"loss": 0.7, "acc": 0.3})]


def test_chunks_split_anywhere_give_the_same_reports() -> None:
    text = "".join(f"epoch={e} loss={1 / e:.4f}\n" for e in range(1, 8))
    whole = LineCollector("stdout", objectives=["loss"], resource_metric="epoch")
    split = LineCollector("stdout", objectives=["loss"], resource_metric="epoch")
    expected = reports(whole, text)
    got = []
    for i in range(0, len(text), 3):
        got += [(r.resource, r.metrics) for r in split.feed_text(text[i:i + 3])]
    got += [(r.resource, r.metrics) for r in split.close()]
    assert got == expected and len(got) == 7


def test_json_lines() -> None:
    c = LineCollector("json", objectives=["loss"], resource_metric="step")
    text = ('{"step": 10, "loss": 0.5, "note": "x"}\n'
            "not json {\n"
            '{"step": 20, "loss": true}\n'  # a boolean is not a metric value
            '[1, 2]\n'
            '  {"step": 30, "loss": 0.25}  \n')
    assert reports(c, text) == [(10, {"loss": 0.5}), (30, {"loss": 0.25})]


def test_regex_with_a_group_per_metric_and_with_name_value_groups() -> None:
    per_metric = LineCollector("regex", objectives=["loss"], resource_metric="epoch",
                               pattern=r"Epoch (?P<epoch>\d+)/\d+ .*val loss (?P<loss>[\d.]+)")
    assert reports(per_metric, "Epoch 1/5 - train loss 3.0 - val loss 2.5\nEpoch 2/5 nothing\n"
                               "Epoch 3/5 - val loss 1.5\n") == [(1, {"loss": 2.5}),
                                                                 (3, {"loss": 1.5})]
    name_value = LineCollector("regex", objectives=["loss", "acc"],
                               pattern=r"(?P<name>\w+): (?P<value>[-\d.e]+)")
    assert reports(name_value, "loss: 0.5, acc: 0.8\n") == [(1, {"loss": 0.5, "acc": 0.8})]


def test_progress_bar_carriage_returns_keep_the_last_version() -> None:
    c = LineCollector("stdout", objectives=["loss"])
    assert reports(c, "loss=0.9\rloss=0.8\rloss=0.7\n") == [(1, {"loss": 0.7})]


def test_from_the_spec_model() -> None:
    spec = parse_spec(MetricsCollectorSpec, {"kind": "stdout", "resourceMetric": "epoch"})
    c = make_collector(spec, ["loss"])
    assert c is not None and c.feed_line("epoch=2 loss=0.1") == [CollectedReport(2, {"loss": 0.1})]
    assert make_collector(parse_spec(MetricsCollectorSpec, {}), ["loss"]) is None
    assert make_collector(None, ["loss"]) is None
    assert "loss=0.3" in c.describe()


@pytest.mark.parametrize("pattern, message", [
    ("(?P<loss>[", "not a valid regular expression"),
    (r"loss (\d+)", "needs named groups"),
    (r"(?P<name>\w+)=", "both groups name and value"),
])
def test_bad_patterns_are_refused_offline(pattern: str, message: str) -> None:
    from hwtune.api.crd import ManifestError

    with pytest.raises(ManifestError) as info:
        parse_spec(MetricsCollectorSpec, {"kind": "regex", "pattern": pattern},
                   prefix="spec.metricsCollector")
    assert message in str(info.value) and "spec.metricsCollector.pattern" in str(info.value)


def test_additional_metrics_ride_along_without_being_waited_for():
    c = LineCollector("stdout", objectives=["loss"], resource_metric="epoch",
                      additional=("accuracy",))
    assert c.feed_text("epoch=1 loss=0.5 accuracy=0.7 other=3\n") == [
        CollectedReport(1, {"loss": 0.5, "accuracy": 0.7})]
    assert c.feed_text("epoch=2 loss=0.4\n") == [CollectedReport(2, {"loss": 0.4})]
    assert c.feed_text("accuracy=0.9\n") == []  # never completes a report by itself
    assert c.feed_text("epoch=3 loss=0.3\n") == [
        CollectedReport(3, {"loss": 0.3, "accuracy": 0.9})]
    assert c.summary() == CollectedReport(1, {"loss": 0.3, "accuracy": 0.9})
