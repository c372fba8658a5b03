"""Bad-input battery: the cases of a new user's bad-input session, one command each, against a checkout.

    python tests/battery.py CHECKOUT OUTDIR      (CHECKOUT as cwd and PYTHONPATH; about 5 minutes)

Not collected by pytest (each case has its own test); this reruns them all as a user would,
e.g. to compare two commits.
Verdicts: clear (exit != 0, the last line names the problem, no traceback), fine (right
behaviour), traceback, silent (exit 0 with a wrong or missing result), cryptic (no traceback,
but the message does not name the problem).
"""
import json, os, shutil, signal, subprocess, sys, time
from collections import Counter
from pathlib import Path
import numpy as np, soundfile as sf

checkout, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
shutil.rmtree(out, ignore_errors=True); out.mkdir(parents=True)
env = {**os.environ, "PYTHONPATH": str(checkout), "XDG_CACHE_HOME": str(out / "cache")}
PY = sys.executable
TINY = "recipes/speech/tiny.yaml"
FAST = ["data.window=8000", "data.num_workers=0", "train.valid_every=1000", "train.progress=false"]
results = []
DFL = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C as in a terminal (background jobs ignore SIGINT)


def cpc(*args, cwd=checkout, timeout=600):
    return subprocess.run([PY, "-m", "cpc.cli", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def last_line(text):
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def verdict(name, r, *needles, silent_ok=False):
    if "Traceback" in r.stderr:
        v = "traceback"
    elif r.returncode == 0:
        v = "fine" if silent_ok else "silent"
    else:
        v = "clear" if all(n.lower() in last_line(r.stderr).lower() for n in needles) else "cryptic"
    results.append((name, v, r.returncode, last_line(r.stderr)[:170]))


def check(name, ok, detail=""):
    results.append((name, "fine" if ok else "silent", None, detail[:170]))


sample = checkout / "data" / "sample"
# --- silently wrong before
copy = out / "copy"; shutil.copytree(sample, copy)
a = cpc("probe", "phone", "--features", "mfcc", "--data", copy, "--json", out / "a.json", "--cache", out / "C")
for f in copy.rglob("*.flac"):
    x, sr = sf.read(f); sf.write(f, (np.random.default_rng(0).standard_normal(len(x)) * 0.05).astype(np.float32), sr)
b = cpc("probe", "phone", "--features", "mfcc", "--data", copy, "--json", out / "b.json", "--cache", out / "C")
acc = lambda p: round(json.loads(Path(p).read_text())["accuracy"], 1) if Path(p).exists() else None
check("stale feature cache", acc(out / "a.json") != acc(out / "b.json"), f"{acc(out / 'a.json')} % then, on noise, {acc(out / 'b.json')} %")

run = out / "run10"
cpc("train", TINY, "--run-dir", run, *FAST, "train.max_steps=10", "train.log_every=5", "train.checkpoint_every=5")
verdict("--resume optim.lr=0.5", cpc("train", TINY, "--run-dir", run, "--resume", *FAST, "train.max_steps=14", "optim.lr=0.5", "train.log_every=5"), "optim.lr")
verdict("--resume train.max_steps below the checkpoint", cpc("train", TINY, "--run-dir", run, "--resume", *FAST, "train.max_steps=5", "train.log_every=5"), "max_steps")
run2 = out / "run-dup"  # logged step 15, checkpointed 10, killed: resume must not log 15 twice
keep = ["train.max_steps=15", "train.log_every=5", "train.checkpoint_every=10", "train.keep_checkpoints=3"]
cpc("train", TINY, "--run-dir", run2, *FAST, *keep)
shutil.copy(run2 / "checkpoints" / "step_10.pt", run2 / "checkpoints" / "last.pt")
cpc("train", TINY, "--run-dir", run2, "--resume", *FAST, *keep)
steps = [(json.loads(l)["step"], json.loads(l).get("split", "train")) for l in (run2 / "metrics.jsonl").read_text().splitlines() if l.strip()] if (run2 / "metrics.jsonl").exists() else []
check("metrics.jsonl after a resume", bool(steps) and steps == sorted(set(steps)), f"logged steps {steps}")
verdict("train.max_steps=0", cpc("train", TINY, "--run-dir", out / "r0", *FAST, "train.max_steps=0"), "max_steps")
verdict("data.window=1600 with K = 12", cpc("train", TINY, "--run-dir", out / "r1", "data.window=1600", "data.num_workers=0", "train.max_steps=2", "train.progress=false"), "data.window")
lines = (sample / "abx" / "test.item").read_text().splitlines()
(out / "few.item").write_text("\n".join(lines[:12]) + "\n")
r = cpc("abx", "--features", "mfcc", "--data", sample, "--item", out / "few.item", "--json", out / "abx.json")
check("abx with a couple of cells", "cells" in (r.stdout + r.stderr).lower() and "warn" in r.stderr.lower(), last_line(r.stderr))
first = lines[1].split(); first[1] = "-0.5"
(out / "negative.item").write_text("\n".join([lines[0], " ".join(first)] + lines[2:]) + "\n")
r = cpc("abx", "--features", "mfcc", "--data", sample, "--item", out / "negative.item", "--json", out / "abx2.json")
results.append(("abx item onset before 0", "traceback" if "Traceback" in r.stderr else ("fine" if "-0.5" in r.stderr else "silent"), r.returncode, last_line(r.stderr)[:170]))

# --- tracebacks before
(out / "bad.yaml").write_text("model:\n  encoder: {norm: channel\n")
verdict("YAML syntax error in a recipe", cpc("train", out / "bad.yaml", "--run-dir", out / "r2"), "yaml")
verdict("train.device=cuda without a GPU", cpc("train", TINY, "--run-dir", out / "r3", *FAST, "train.device=cuda"), "cuda")
verdict("probe --device cuda without a GPU", cpc("probe", "phone", "--features", "random", "--data", sample, "--json", out / "p.json", "--device", "cuda"), "cuda")
(out / "adir").mkdir()
verdict("probe --json is a directory", cpc("probe", "phone", "--features", "mfcc", "--data", sample, "--json", out / "adir"), "adir")
verdict("probe --json in a read-only place", cpc("probe", "phone", "--features", "mfcc", "--data", sample, "--json", "/proc/cpc.json"), "/proc/cpc.json")
p = subprocess.Popen([PY, "-m", "cpc.cli", "train", TINY, "--run-dir", str(out / "rc"), *FAST, "train.max_steps=100000", "train.checkpoint_every=5"],
                     cwd=checkout, env=env, stderr=subprocess.PIPE, text=True, preexec_fn=DFL)
deadline = time.time() + 180
while not (out / "rc" / "checkpoints" / "last.pt").exists() and time.time() < deadline and p.poll() is None:
    time.sleep(0.2)
time.sleep(1); p.send_signal(signal.SIGINT); err = p.communicate(timeout=60)[1]
results.append(("Ctrl-C during training", "traceback" if "Traceback" in err else ("clear" if "resume" in last_line(err) else "cryptic"), p.returncode, last_line(err)[:170]))
(out / "afile").write_text("")
verdict("--run-dir names a file", cpc("train", TINY, "--run-dir", out / "afile", *FAST, "train.max_steps=2"), "afile")
verdict("read-only run directory", cpc("train", TINY, "--run-dir", "/proc/cpc-run", *FAST, "train.max_steps=2"), "/proc/cpc-run")
verdict("data synth --hours inf", cpc("data", "synth", "--out", out / "inf", "--hours", "inf"), "hours")
outside = out / "elsewhere"; outside.mkdir()
verdict("bench train outside the checkout", cpc("bench", "train", "--steps", "1", "--warmup", "0", "--skip-copied", "train.batch_size=2", "data.window=4096", cwd=outside), silent_ok=True)
verdict("bench train, missing recipe", cpc("bench", "train", "--recipe", "nowhere.yaml"), "nowhere")
verdict("bench train --steps 0", cpc("bench", "train", "--recipe", TINY, "--steps", "0", "--skip-copied"), "steps")
verdict("probe speaker --crop-frames 0", cpc("probe", "speaker", "--features", "mfcc", "--data", sample, "--json", out / "s.json", "--crop-frames", "0"), "crop")
verdict("data.window=0", cpc("train", TINY, "--run-dir", out / "w0", "data.window=0", "data.num_workers=0"), "data.window")
verdict("data.window=100", cpc("train", TINY, "--run-dir", out / "w100", "data.window=100", "data.num_workers=0"), "data.window")
verdict("train.batch_size=0", cpc("train", TINY, "--run-dir", out / "b0", *FAST, "train.batch_size=0"), "batch_size")
p = subprocess.Popen([PY, "-m", "cpc.cli", "data", "synth", "--out", str(out / "partial"), "--hours", "0.3"], cwd=checkout, env=env,
                     stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=DFL)
time.sleep(8); os.killpg(p.pid, signal.SIGINT); err = p.communicate(timeout=60)[1]
results.append(("Ctrl-C during data synth", "traceback" if "Traceback" in err else "clear", p.returncode, last_line(err)[:170]))
verdict("data synth rerun on the partial folder", cpc("data", "synth", "--out", out / "partial", "--hours", "0.3"), silent_ok=True)

width = max(len(n) for n, *_ in results)
for name, v, code, line in results:
    print(f"{name:<{width}}  {v:<9}  rc={code}  {line}")
print(dict(Counter(v for _, v, *_ in results)))
json.dump(results, open(out / "battery.json", "w"), indent=1)
