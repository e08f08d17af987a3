"""The streaming benchmark's arithmetic (bench/stream.py; no services): the sustained figure only from runs
with enough committed steps, the ratio's basis, and the CPU accounting of the process tree."""

from __future__ import annotations

from bench import stream


def test_a_run_with_few_committed_steps_has_no_sustained_figure():
    # the floor's shape: most records committed by the first checkpoint, the end two checkpoints later
    short = [(0.0, 0), (8.5, 0), (9.0, 200_000), (11.0, 280_000), (13.0, 300_300)]
    r = stream._rates(short, 0.0, 13.0, 300_300)
    assert "sustained_records_per_s" not in r and r["commit_steps"] == 2 and "sustained_note" in r
    assert r["records_per_s"] == round(300_300 / 13.0, 1)
    steady = [(0.0, 0)] + [(5.0 + 2 * i, 20_000 * (i + 1)) for i in range(15)]
    r = stream._rates(steady, 0.0, 33.0, 300_000)
    assert r["commit_steps"] == 14
    assert r["sustained_records_per_s"] == round((300_000 - 20_000) / (33.0 - 5.0), 1)


def test_the_ratio_uses_sustained_figures_only_when_both_have_one():
    th = {"topic": "uniform", "records": 1_000_000, "events": 999_000, "malformed": 1_000, "topic_partitions": 3,
          "contenders": {
              "flink floor": {"seconds": 10.0, "records_per_s": 100_000.0, "cpu_us_per_record": 20.0,
                              "cpu_s": {"job": 15.0, "kafka": 5.0, "redis": 0.0}},
              "full job": {"seconds": 40.0, "records_per_s": 25_000.0, "sustained_records_per_s": 30_000.0,
                           "cpu_us_per_record": 100.0, "cpu_s": {"job": 80.0, "kafka": 10.0, "redis": 10.0}}}}
    text = "\n".join(stream._render_throughput(th))
    assert "| 0.25x |" in text and "(overall): **missed**" in text  # 25k / 100k: the floor has no sustained figure
    assert "80 + 10 + 10 = 100" in text and "0.20x" in text  # CPU: 20 / 100
    th["contenders"]["flink floor"]["sustained_records_per_s"] = 50_000.0
    text = "\n".join(stream._render_throughput(th))
    assert "| 0.60x |" in text and "(sustained): **met**" in text


def test_the_cpu_meter_counts_this_process():
    meter = stream.CpuMeter.__new__(stream.CpuMeter)
    meter.kafka, meter._redis = None, lambda: None
    with meter:
        x = 0
        for i in range(3_000_000):
            x += i
    assert meter.used["job"] > 0 and meter.used["kafka"] is None
    assert meter.result(1_000)["cpu_us_per_record"] > 0
