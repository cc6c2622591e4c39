"""The plots dvc.yaml declares render with `dvc plots show`, and `dvc plots diff` between two experiments
works: a scratch repository with the project's `plots:` section, .gitignore and plot writers
(pipeline.plots), fed by a stand-in stage instead of the pipeline."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

FAKE_STAGE = '''
import sys, yaml
from pipeline.plots import write_comparison_bars, write_curves, write_toy_spread
s = yaml.safe_load(open("params.yaml"))["scale"]
gm = {"loss/gm/cls": 1.0, "loss/gm/lkd": 0.5, "loss/gm/total": 1.6}
joint = {"loss/joint/rec": 2.0, "loss/joint/kl": 0.3, "loss/joint/lkd": 0.4, "loss/joint/total": 3.0, "d/gap": 0.6}
rows = lambda terms: [{"step": t, **{k: s * v / t for k, v in terms.items()}} for t in (10, 20, 30)]
write_curves("reports/curves/train_gm.json", rows(gm))
write_curves("reports/curves/train_joint.json", rows({**gm, **joint}))
semi = rows(joint)
semi[-1]["loss/joint/adv_c"] = 0.7  # a term logged on some steps only (a labeled batch)
write_curves("reports/curves/finetune_semi.json", semi)
for kind in ("cvae", "cgan", "cvaegan"):
    write_curves(f"reports/curves/train_baseline_{kind}.json", rows({f"loss/{kind}/total": 2.0}))
write_toy_spread("reports/curves/toy.json", {e: {"ours": s * e / 50, "cvaegan": 0.4, "real": 1.0} for e in (1, 25, 50)})
reports = {m: {"inception_score": s * i, "fcd": 10.0 / i, "generated_class_accuracy": 0.1 * i}
           for i, m in enumerate(("cvae", "cgan", "cvaegan", "ours"), 1)}
reports["cgan"]["fcd"] = float("nan")  # a metric a model lacks
write_comparison_bars("reports/comparison_plot.json", reports, {})
'''


def _plot_files(plots: list) -> list[str]:
    files = []
    for entry in plots:
        (key, cfg), = entry.items() if isinstance(entry, dict) else ((entry, {}),)
        y = (cfg or {}).get("y")
        files += list(y) if isinstance(y, dict) else [key]
    return sorted(set(files))


def _sh(args, cwd, env):
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{args} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_declared_plots_render_and_diff_between_experiments(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    project = yaml.safe_load((REPO / "dvc.yaml").read_text())
    files = _plot_files(project["plots"])
    assert {"reports/curves/train_gm.json", "reports/curves/train_joint.json", "reports/curves/toy.json",
            "reports/comparison_plot.json"} <= set(files)
    # every plot file is a cache: false output of a pipeline stage, so it lands in the experiment's commit
    outs = {next(iter(o)) if isinstance(o, dict) else o for st in project["stages"].values()
            for o in st.get("do", st).get("outs", [])}
    outs = {o.replace("${item}", k) for o in outs for k in ("cvae", "cgan", "cvaegan")}
    assert set(files) <= outs, set(files) - outs
    shutil.copy(REPO / ".gitignore", tmp_path / ".gitignore")
    (tmp_path / "fake.py").write_text(FAKE_STAGE)
    (tmp_path / "params.yaml").write_text("scale: 1.0\n")
    stage = {"cmd": f"{sys.executable} fake.py", "deps": ["fake.py"], "params": ["scale"],
             "outs": [{f: {"cache": False}} for f in files]}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"fake": stage}, "plots": project["plots"]},
                                                      sort_keys=False))
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]))
    dvc = [sys.executable, "-m", "dvc"]
    for args in (["git", "init", "-q"], ["git", "config", "user.email", "t@localhost"],
                 ["git", "config", "user.name", "t"], dvc + ["init", "-q"], dvc + ["repro", "-q"],
                 ["git", "add", "-A"], ["git", "commit", "-qm", "baseline"]):
        _sh(args, tmp_path, env)
    for f in files:  # not git-ignored: `dvc exp run` commits them with the experiment
        assert subprocess.run(["git", "check-ignore", "-q", f], cwd=tmp_path).returncode == 1, f

    shown = json.loads(_sh(dvc + ["plots", "show", "--json"], tmp_path, env))
    ids = [next(iter(e)) if isinstance(e, dict) else e for e in project["plots"]]
    assert not shown.get("errors") and set(shown["data"]) == set(ids)
    for pid, rendered in shown["data"].items():
        (plot,) = rendered
        assert plot["type"] == "vega" and not plot.get("errors"), pid
        assert len(plot["content"]["data"]["values"]) >= 3, pid

    for name, scale in (("exp-a", 2.0), ("exp-b", 3.0)):
        _sh(dvc + ["exp", "run", "-q", "-n", name, "-S", f"scale={scale}"], tmp_path, env)
    diff = json.loads(_sh(dvc + ["plots", "diff", "exp-a", "exp-b", "--json"], tmp_path, env))
    assert not diff.get("errors"), diff.get("errors")
    toy = diff["data"]["reports/curves/toy.json"][0]["content"]["data"]["values"]
    ours = {(v["rev"], v["epoch"]): v["ours"] for v in toy if v.get("field") == "ours"}
    assert ours[("exp-a", 50)] == pytest.approx(2.0) and ours[("exp-b", 50)] == pytest.approx(3.0)
    bars = diff["data"]["inception_score_by_model"][0]["content"]["data"]["values"]
    assert {v["rev"] for v in bars} == {"exp-a", "exp-b"} and len(bars) == 8
