"""The generation/update-step/memory benchmark's --quick path on the tiny model (slow: ~35 s on
2 cores, most of it the memory probes' fresh processes)."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_quick_run_prints_generation_step_and_memory_tables(capsys):
    from benchmarks import train_throughput

    rows = train_throughput.main(["--model", "tiny", "--quick", "--threads", "1"])
    printed = capsys.readouterr().out

    assert [r["adapters"] for r in rows["generation"]] == list(train_throughput.ADAPTER_COUNTS)
    assert [r["slots"] for r in rows["memory"]] == list(train_throughput.ADAPTER_COUNTS)

    (step,) = rows["step"]
    assert step["sequences"] == train_throughput.STEP_SEQUENCES
    assert step["padded"] == (
        train_throughput.STEP_SEQUENCES,
        train_throughput.STEP_PROMPT + train_throughput.STEP_COMPLETION,
    )
    for way in ("ours", "ours_ent", "trl"):
        assert len(step[f"{way}_all"]) == 3 and step[way] > 0
    # the same batch and loss on both sides: TRL's GRPOTrainer and ours agree
    assert step["loss_ours"] == pytest.approx(step["loss_trl"], rel=1e-5, abs=1e-6)
    assert step["grad_cosine"] > 0.99
    assert "ours/TRL" in printed and "TRL s/step" in printed
