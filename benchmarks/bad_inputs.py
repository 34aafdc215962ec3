"""Try every bad input of docs/reliability.md through the command line and tabulate what the user sees.

Run on demand (not a test; pytest does not collect this file):

    python benchmarks/bad_inputs.py --out docs/data/reliability

Each case is one ``guidedmarl`` command (run in process with typer's test runner, in a scratch
folder); the table gives its exit code (2: a settings error, 1: another library error, 0: it
ran) and the first line of what it printed. A case "passes" when it exits 1 or 2 with a
one-line message and no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch

SMALL = ["--agents", "6", "--episodes", "1", "--quiet", "--set", "domain_config.horizon=3",
         "--set", "domain_config.warmup=1", "--set", "eval.test_scenarios=2", "--set", "eval.validation_scenarios=1"]  # fmt: skip


def cases(scratch: Path) -> list[tuple[str, list[str]]]:
    """(what, arguments) of every bad input."""
    afile = scratch / "a_file"
    afile.write_text("x")
    (scratch / "broken.yaml").write_text("ppo: [unclosed\n")
    (scratch / "list.yaml").write_text("- 1\n- 2\n")
    (scratch / "bad_value.yaml").write_text("domain: cloud\nppo:\n  learning_rate: 5\n")
    (scratch / "notes.txt").write_text("domain = cloud\n")
    (scratch / "corrupt.pt").write_bytes(b"not a checkpoint")
    torch.save({"weights": torch.zeros(2)}, scratch / "foreign.pt")
    finished = scratch / "finished"
    out = ["--out", str(scratch / "run")]
    run = ["run", "--domain", "cloud", *SMALL]
    return [
        ("unknown domain", ["run", "--domain", "clod", *out]),
        ("unknown learner preset", ["run", "--domain", "cloud", "--algo", "mapo", *out]),
        ("zero agents", ["run", "--domain", "cloud", "--agents", "0", *out]),
        ("negative agents", ["run", "--domain", "cloud", "--agents", "-5", *out]),
        ("zero episodes", ["run", "--domain", "cloud", "--episodes", "0", *out]),
        ("too many environments", ["run", "--domain", "cloud", "--envs", "5000", *out]),
        ("negative seed", ["run", "--domain", "cloud", "--seed", "-1", *out]),
        ("zero threads", ["run", "--domain", "cloud", "--threads", "0", *out]),
        ("malformed device", ["run", "--domain", "cloud", "--device", "gpu", *out]),
        ("CUDA on a machine without it", ["run", "--domain", "cloud", "--device", "cuda", *out]),
        ("a CPU-only domain on CUDA", ["run", "--domain", "power", "--device", "cuda", *out]),
        ("learning rate NaN", [*run, "--set", "ppo.learning_rate=nan", *out]),
        ("learning rate above 1", [*run, "--set", "ppo.learning_rate=2", *out]),
        ("negative hidden width", [*run, "--set", "ppo.hidden=[-3]", *out]),
        ("zero hidden width", [*run, "--set", "ppo.hidden=[0]", *out]),
        ("no hidden layer", [*run, "--set", "ppo.hidden=[]", *out]),
        ("misspelt PPO key", [*run, "--set", "ppo.learning_rat=0.1", *out]),
        ("unknown actor", [*run, "--set", "ppo.actor=transformer", *out]),
        ("option scorer where options have no features", ["run", "--domain", "power", "--episodes", "1",
                                                          "--set", "ppo.actor=option_scorer", *out]),
        ("infinite domain setting", [*run, "--set", "domain_config.workload.burst_factor=.inf", *out]),
        ("misspelt domain key", [*run, "--set", "domain_config.horizn=3", *out]),
        ("unknown power case", ["run", "--domain", "power", "--set", "domain_config.case=case31", *out]),
        ("unknown traffic network", ["run", "--domain", "traffic", "--set", "domain_config.network=siouxfals", *out]),
        ("power N other than the case's", ["run", "--domain", "power", "--agents", "7", *out]),
        ("unknown alpha schedule", [*run, "--set", "learner.estimator.alpha.kind=cubic", *out]),
        ("alpha above 1", [*run, "--set", "learner.estimator.alpha.end=1.5", *out]),
        ("zero test scenarios", [*run, "--set", "eval.test_scenarios=0", *out]),
        ("evaluate every 0 episodes", [*run, "--set", "eval.every=0", *out]),
        ("--set without =", [*run, "--set", "ppo", *out]),
        ("--set under a value", [*run, "--set", "ppo=1", "--set", "ppo.gamma=0.9", *out]),
        ("missing config file", ["run", "--config", str(scratch / "missing.yaml"), *out]),
        ("config file of unknown type", ["run", "--config", str(scratch / "notes.txt"), *out]),
        ("config file that does not parse", ["run", "--config", str(scratch / "broken.yaml"), *out]),
        ("config file holding a list", ["run", "--config", str(scratch / "list.yaml"), *out]),
        ("bad value in a config file", ["run", "--config", str(scratch / "bad_value.yaml"), *out]),
        ("--out is a file", [*run, "--out", str(afile)]),
        ("--out under a file", [*run, "--out", str(afile / "run")]),
        ("a finished run without --force", [*run, "--out", str(finished)]),
        ("unknown logger", [*run, "--log", "mlflow", *out]),
        ("missing plugin", [*run, "--plugin", str(scratch / "missing.py"), *out]),
        ("domain file that does not exist", ["run", "--domain", str(scratch / "nofile.py") + ":X", *out]),
        ("a million agents (memory)", ["run", "--domain", "cloud", "--agents", "1000000", *out]),
        ("resume a folder that is not a run", ["resume", str(scratch)]),
        ("evaluate a corrupt checkpoint", ["evaluate", str(finished), "--checkpoint", str(scratch / "corrupt.pt")]),
        ("evaluate a foreign checkpoint", ["evaluate", str(finished), "--checkpoint", str(scratch / "foreign.pt")]),
        ("evaluate a missing run", ["evaluate", str(scratch / "nothing")]),
        ("check an unknown domain", ["check", "--domain", "clod"]),
        ("config show of an unknown domain", ["config", "show", "--domain", "clod"]),
        ("study with zero agents", ["study", "scale", "--domain", "cloud", "--agents", "0", "--out", str(scratch / "st")]),
        ("study with an unknown backend", ["study", "scale", "--domain", "cloud", "--backend", "dask",
                                           "--out", str(scratch / "st")]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/data/reliability"))
    args = parser.parse_args()
    os.environ.setdefault("COLUMNS", "200")
    from typer.testing import CliRunner

    from guidedmarl.cli import app

    runner, rows = CliRunner(), []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        made = runner.invoke(app, ["run", "--domain", "cloud", *SMALL, "--out", str(scratch / "finished")])
        assert made.exit_code == 0, made.output
        for what, argv in cases(scratch):
            res = runner.invoke(app, argv)
            text = (res.output or "").replace(str(scratch), "TMP")
            lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("guidedmarl:")]
            message = " ".join(lines[:3])[:220]
            clean = res.exit_code in (1, 2) and "Traceback" not in text and bool(lines)
            rows.append({"input": what, "command": " ".join(argv).replace(str(scratch), "TMP"),
                         "exit": res.exit_code, "message": message, "clear": clean})  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    passed = sum(r["clear"] for r in rows)
    table = [f"{passed} of {len(rows)} bad inputs give a clear error (exit 1 or 2, no traceback).", "",
             "| input | exit | what the user sees |", "|---|---:|---|"]  # fmt: skip
    for r in rows:
        table.append(f"| {r['input']} | {r['exit']} | {r['message'].replace('|', '/')} |")
    (args.out / "bad_inputs.md").write_text("\n".join(table) + "\n")
    (args.out / "bad_inputs.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(table))


if __name__ == "__main__":
    main()
