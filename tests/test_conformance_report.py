"""The per-tier summary of written conformance reports."""

import json

from conformance import report


def _write(folder, device, wall):
    env = {"device": device, "tier": "gpu" if device == "cuda" else "interpreter", "gpu": "X"}
    env.update(date="2026-12-01", wall_seconds=wall)
    report.write(folder, env, [], [])


def test_one_row_per_tier_with_its_totals(tmp_path):
    _write(tmp_path / "cpu", "cpu", 99.4)
    _write(tmp_path / "gpu", "cuda", 151.0)
    data = json.loads((tmp_path / "gpu" / "report.json").read_text())
    data["totals"].update(cases=3, passed=3, mutants=4, mutants_caught_with_right_cause=3)
    data["totals"]["mutation_score"] = 0.75
    (tmp_path / "gpu" / "report.json").write_text(json.dumps(data))
    rows = report.tier_summary([tmp_path / "cpu", tmp_path / "gpu"]).splitlines()[2:]
    assert rows[0].startswith("| interpreter | X | 0 | 0 | 0 | 0 | - | 99 s |")
    assert rows[1].startswith("| gpu | X | 3 | 3 | 4 | 3 | 75% | 151 s |")


def test_a_missing_report_is_one_line_and_exit_2(tmp_path, capsys):
    assert report.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "report.json" in err
