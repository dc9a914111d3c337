"""The benchmark command runs end to end in a tiny configuration and writes its two reports."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_bench_run_tiny_writes_results_and_markdown(tmp_path):
    cmd = [sys.executable, "-m", "bench.run", "--tiny", "--workdir", str(tmp_path / "work"),
           "--out", str(tmp_path)]
    subprocess.run(cmd, cwd=REPO, check=True, timeout=900)
    r = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert r["ceiling"]["tiles_per_s"] > 0 and r["ceiling"]["matmul_gflops"] > 0
    assert 0 < r["ceiling"]["fraction_of_matmul"] < 1.5
    assert r["pipeline"]["size"] == 384 and r["pipeline"]["tiles"] == 9
    assert r["pipeline"]["tiles_per_s"] > 0 and r["pipeline"]["peak_rss_gib"] > 0
    stages = r["pipeline"]["stages_s"]
    assert set(stages) >= {"cluster_start_s", "blocks_s", "polygons_rasters_s", "write_s",
                           "total_s"}
    assert sum(v for k, v in stages.items() if k != "total_s") == pytest.approx(stages["total_s"])
    assert 0 < stages["total_s"] < r["pipeline"]["wall_s"]
    worker = r["pipeline"]["infer_worker_s"]
    assert worker["model_s"] > 0 and worker["load_s"] > 0  # a fresh cluster loads the model
    warm = r["warm_cluster"]
    assert warm["size"] == 384 and warm["tiles_per_s"] > 0
    assert warm["infer_worker_s"]["load_s"] < 0.5  # the second job finds the model loaded
    assert [s["size"] for s in r["scale"]] == [256, 384]
    assert set(r["training"]) == {"default", "mirrored --replicas 2", "multiworker (2 processes)"}
    assert all(t["samples_per_s"] > 0 for t in r["training"].values())
    md = (tmp_path / "BENCHMARKS.md").read_text()
    assert "job / bare model" in md and "384^2" in md and "multiworker" in md
    assert "long-lived cluster" in md and "the network" in md and "floor" in md
    narrow, wide = r["widths"]
    assert (narrow["width"], wide["width"]) == (4, 6)
    assert wide["ceiling"]["gflop_per_tile"] > narrow["ceiling"]["gflop_per_tile"]
    assert wide["pipeline"]["tiles"] == 9 and "width-6 job" in md
    for w in r["widths"]:
        p = w["pipeline"]
        assert set(p["floor_parts_s"]) == {"process_s", "cluster_s", "load_s", "read_s",
                                           "write_s"}
        assert all(v > 0 for v in p["floor_parts_s"].values())
        assert p["floor_s"] == pytest.approx(sum(p["floor_parts_s"].values())
                                             + p["floor_model_s"])
        assert 0 < p["floor_ratio"] < 1 and p["ratio_to_ceiling"] > 0
    event = r["event"]
    assert event["size"] == 256 and event["one_wall_s"] > 0 and event["two_wall_s"] > 0
    assert "two 256^2 scenes" in md
    gen = r["generalisation"]["rows"]
    assert [row["width"] for row in gen] == [4] and gen[0]["other"]["f1"] >= 0
    assert "Generalisation" in md
