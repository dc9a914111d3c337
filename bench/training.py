"""The training side of the bench: samples/s of jobs.train under each tf.distribute strategy,
and how well models of several widths, trained on the default world's patches, map a scene of
another world (the generalisation table that chose the default width).

Standalone: `python -m bench.training --out TABLES.md` writes both tables (see --help).
"""

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from bench.procs import REPO, check, env, run_measured


def fresh(model_dir: Path) -> Path:
    """The bench's own training folder, emptied: jobs.train refuses to start over a checkpoint
    it was not told to resume, and every bench run trains from scratch."""
    shutil.rmtree(model_dir, ignore_errors=True)
    return model_dir


def train_cmd(cfg: dict, data: Path, out: Path, strategy: str) -> list[str]:
    return [sys.executable, "-m", "jobs.train", "--data", str(data), "--out", str(out),
            "--strategy", strategy, "--epochs", str(cfg["train_epochs"]),
            "--steps-per-epoch", str(cfg["train_steps"]), "--batch-size", "16",
            "--base-width", str(cfg["width"]), "--depth", str(cfg["depth"]), "--quiet"]


def last_rate(model_dir: Path) -> float:
    """Samples/s of the epochs after the first (median; the first also pays for tracing the
    step functions)."""
    state = json.loads((model_dir / "checkpoints" / "state.json").read_text())
    rates = [h["samples_per_second"] for h in state["history"]]
    return float(statistics.median(rates[1:] or rates))


STRATEGIES = (("default", "default", []),
              ("mirrored --replicas 2", "mirrored", ["--replicas", "2"]))


def bench_training(cfg: dict, work: Path) -> dict:
    """Samples/s under each strategy. The machine is shared and its speed drifts: the
    strategies are run in turn (A B C A B C ...) cfg["train_rounds"] times (default 1; a full
    run should ask for 2 or more) and each figure is the median of its rounds, so a ratio
    compares runs made side by side."""
    from simulator.patches import write_patches

    data = work / "patches"
    if not (data / "dataset.json").exists():
        write_patches(data, cfg["n_train"], cfg["n_valid"], seed=0)
    runs: dict[str, list[dict]] = {}
    for _ in range(int(cfg.get("train_rounds", 1))):
        for name, strategy, extra in STRATEGIES:
            out = fresh(work / f"train-{strategy}")
            m = run_measured(train_cmd(cfg, data, out, strategy) + ["--seed", "0"] + extra,
                             env=env(), cwd=REPO, log=work / f"train-{strategy}.log")
            check(m, f"jobs.train --strategy {strategy}", work / f"train-{strategy}.log")
            runs.setdefault(name, []).append({"samples_per_s": last_rate(out),
                                              "wall_s": m.wall_s})
        runs.setdefault("multiworker (2 processes)", []).append(
            bench_multiworker(cfg, data, work))
    results = {}
    for name, rs in runs.items():
        results[name] = {"samples_per_s": statistics.median(r["samples_per_s"] for r in rs),
                         "wall_s": statistics.median(r["wall_s"] for r in rs),
                         "rounds": [round(r["samples_per_s"], 1) for r in rs]}
    return results


def bench_multiworker(cfg: dict, data: Path, work: Path) -> dict:
    import socket
    import subprocess
    import time

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    workers = [f"127.0.0.1:{p}" for p in ports]
    out = fresh(work / "train-multiworker")
    t0 = time.perf_counter()
    procs = []
    for i in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
        cmd = train_cmd(cfg, data, out, "multiworker") + ["--threads", "1"]
        if i:
            cmd += ["--worker-dir", str(fresh(work / f"multiworker-{i}"))]
        log = open(work / f"train-multiworker-{i}.log", "w")  # noqa: SIM115
        procs.append((subprocess.Popen(cmd, env={**env(), "TF_CONFIG": json.dumps(tf_config)},
                                       cwd=REPO, stdout=log, stderr=subprocess.STDOUT), log))
    codes = [p.wait(timeout=1800) for p, _ in procs]
    for _, log in procs:
        log.close()
    if any(codes):
        raise RuntimeError(f"multiworker training failed {codes}: see {work}/train-multiworker-*")
    return {"samples_per_s": last_rate(out), "wall_s": time.perf_counter() - t0}


def training_markdown(r: dict) -> list[str]:
    """The training section of BENCHMARKS.md."""
    runs = r["training"]
    base = runs.get("default", {}).get("samples_per_s") or 0.0
    lines = ["", "## Training throughput (jobs.train, batch 16, epochs after the first)", "",
             "Each strategy run in turn with the others, median of the rounds (each round's "
             "figure in the last column). CPU replicas and workers on one machine share its "
             "cores: at best they match the default strategy (jobs.train says so at start-up).",
             "", "| strategy | samples/s | / default | wall (s) | rounds (samples/s) |",
             "|---|---|---|---|---|"]
    for name, t in runs.items():
        ratio = f"{t['samples_per_s'] / base:.2f}" if base else "-"
        rounds = ", ".join(f"{x:.1f}" for x in t.get("rounds", [t["samples_per_s"]]))
        lines.append(f"| {name} | {t['samples_per_s']:.1f} | {ratio} | {t['wall_s']:.1f} | "
                     f"{rounds} |")
    return lines


GENERALISATION = {"n_train": 600, "n_valid": 150, "epochs": 8, "widths": [8, 16, 32],
                  "scene": 2048, "world": "monsoon"}
"""The generalisation protocol of a full bench run (cfg["generalisation"] overrides it)."""


def bench_generalisation(cfg: dict, work: Path) -> dict:
    """Per candidate width: train on the default world's patches (jobs.train, default strategy,
    every other setting the default), then score the bundle on ValidData (patch F1) and on a
    whole scene of the default world and of the other world (unet.scene_score)."""
    from simulator.patches import write_patches
    from simulator.scene import write_scene

    g = {**GENERALISATION, **cfg.get("generalisation", {})}
    data = work / "gen-patches"
    if not (data / "dataset.json").exists():
        write_patches(data, g["n_train"], g["n_valid"], seed=0)
    scenes = {}
    for world in ("alpine", g["world"]):
        scenes[world] = work / f"gen-scene-{world}-{g['scene']}"
        if not (scenes[world] / "truth.tif").exists():
            write_scene(scenes[world], g["scene"], g["scene"], seed=1, world=world)
    rows = []
    for width in g["widths"]:
        out = fresh(work / f"gen-width{width}")
        log = work / f"gen-width{width}.log"
        cmd = [sys.executable, "-m", "jobs.train", "--data", str(data), "--out", str(out),
               "--strategy", "default", "--epochs", str(g["epochs"]), "--base-width",
               str(width), "--seed", "0", "--quiet"]
        m = run_measured(cmd, env=env(), cwd=REPO, log=log)
        check(m, f"jobs.train --base-width {width}", log)
        t0 = time.perf_counter()
        score = run_measured([sys.executable, "-m", "bench.training", "score", str(out),
                              *map(str, scenes.values())], env=env(), cwd=REPO,
                             log=work / f"gen-width{width}-score.log")
        check(score, f"scene scores of width {width}", work / f"gen-width{width}-score.log")
        worlds = json.loads(score.output.strip().splitlines()[-1])
        bundle = json.loads((out / "bundle.json").read_text())
        rows.append({"width": width, "patch": bundle["metrics"], "train_s": m.wall_s,
                     "samples_per_s": last_rate(out), "score_s": time.perf_counter() - t0,
                     "scene": worlds[str(scenes["alpine"])],
                     "other": worlds[str(scenes[g["world"]])]})
    return {"protocol": g, "rows": rows}


def generalisation_markdown(r: dict) -> list[str]:
    """The generalisation section of BENCHMARKS.md."""
    g = r["generalisation"]
    p = g["protocol"]
    lines = ["", "## Generalisation: patch F1 against scene F1 in another world", "",
             f"Each width trained by `jobs.train` (default strategy and settings, "
             f"{p['epochs']} epochs) on {p['n_train']} + {p['n_valid']} patches of the default "
             f"world (`jobs.synth patches`), then scored on its validation patches, on a "
             f"{p['scene']}^2 scene of the same world and on a {p['scene']}^2 scene of the "
             f"`{p['world']}` world (`jobs.synth scene --world {p['world']}`: other spectra, "
             "more and smaller landslides, other confusers), at the bundle's threshold "
             "(`unet.scene_score`). Small: landslides under 10 pixels.", "",
             f"| width | patch F1 | scene F1 (same world) | scene F1 ({p['world']}) | drop | "
             f"recall ({p['world']}) | small-landslide recall | train (s) | samples/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in g["rows"]:
        patch, other = row["patch"]["f1"], row["other"]
        small = other["small_recall"]
        lines.append(
            f"| {row['width']} | {patch:.3f} | {row['scene']['f1']:.3f} | {other['f1']:.3f} | "
            f"{patch - other['f1']:.3f} | {other['recall']:.3f} | "
            f"{'-' if small is None else f'{small:.2f}'} | {row['train_s']:.0f} | "
            f"{row['samples_per_s']:.1f} |")
    return lines


def _score_main(model_dir: str, scenes: list[str]) -> None:
    """Print {scene: scores} as one JSON line (run in its own process: TensorFlow stays out of
    the bench's)."""
    from unet.scene_score import score_scene

    print(json.dumps({s: score_scene(model_dir, s) for s in scenes}))


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.training [--what strategies,generalisation] --out FILE.md`."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["score"]:
        _score_main(argv[1], argv[2:])
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.training", description=__doc__)
    p.add_argument("--out", type=Path, required=True, help="markdown file to write")
    p.add_argument("--work", type=Path, default=Path("bench-run"), help="work folder")
    p.add_argument("--what", default="strategies,generalisation")
    p.add_argument("--widths", default=",".join(map(str, GENERALISATION["widths"])))
    p.add_argument("--epochs", type=int, default=GENERALISATION["epochs"])
    p.add_argument("--rounds", type=int, default=2, help="strategy rounds (A B C A B C ...)")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    cfg = {"n_train": 256, "n_valid": 64, "width": 8, "depth": 4, "train_epochs": 3,
           "train_steps": 12, "train_rounds": args.rounds,
           "generalisation": {"widths": [int(w) for w in args.widths.split(",")],
                              "epochs": args.epochs}}
    results, lines = {}, []
    what = args.what.split(",")
    if "strategies" in what:
        results["training"] = bench_training(cfg, args.work)
        lines += training_markdown(results)
    if "generalisation" in what:
        results["generalisation"] = bench_generalisation(cfg, args.work)
        lines += generalisation_markdown(results)
    args.out.write_text("\n".join([f"Measured by `python -m bench.training "
                                    f"{' '.join(argv)}` on {time.strftime('%Y-%m-%d %H:%M')}."]
                                   + lines) + "\n")
    (args.work / "training-results.json").write_text(json.dumps(results, indent=2))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
