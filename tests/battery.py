"""Bad-input battery: the cases of a new user's bad-input session, one command each, against a checkout.

    python tests/battery.py CHECKOUT OUTDIR      (CHECKOUT as cwd and PYTHONPATH; about 5 minutes)

Not collected by pytest (each case has its own test); this reruns them all as a user would,
e.g. to compare two commits.
Verdicts: clear (exit != 0, the last line names the problem, no traceback), fine (right
behaviour), traceback, silent (exit 0 with a wrong or missing result), cryptic (no traceback,
but the message does not name the problem), lost (a file that was not the command's output was
destroyed), ran code (a checkpoint's pickled payload ran).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf

checkout, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
shutil.rmtree(out, ignore_errors=True)
out.mkdir(parents=True)
env = {**os.environ, "PYTHONPATH": str(checkout), "XDG_CACHE_HOME": str(out / "cache")}
PY = sys.executable
TINY = "recipes/speech/tiny.yaml"
FAST = ["data.window=8000", "data.num_workers=0", "train.valid_every=1000", "train.progress=false"]
results = []
DFL = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C as in a terminal (background jobs ignore SIGINT)


def cpc(*args, cwd=checkout, timeout=600):
    return subprocess.run(
        [PY, "-m", "cpc.cli", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


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
copy = out / "copy"
shutil.copytree(sample, copy)
a = cpc("probe", "phone", "--features", "mfcc", "--data", copy, "--json", out / "a.json", "--cache", out / "C")
for f in copy.rglob("*.flac"):
    x, sr = sf.read(f)
    sf.write(f, (np.random.default_rng(0).standard_normal(len(x)) * 0.05).astype(np.float32), sr)
b = cpc("probe", "phone", "--features", "mfcc", "--data", copy, "--json", out / "b.json", "--cache", out / "C")
acc = lambda p: round(json.loads(Path(p).read_text())["accuracy"], 1) if Path(p).exists() else None
check(
    "stale feature cache",
    acc(out / "a.json") != acc(out / "b.json"),
    f"{acc(out / 'a.json')} % then, on noise, {acc(out / 'b.json')} %",
)

run = out / "run10"
cpc("train", TINY, "--run-dir", run, *FAST, "train.max_steps=10", "train.log_every=5", "train.checkpoint_every=5")
verdict(
    "--resume optim.lr=0.5",
    cpc("train", TINY, "--run-dir", run, "--resume", *FAST, "train.max_steps=14", "optim.lr=0.5", "train.log_every=5"),
    "optim.lr",
)
verdict(
    "--resume train.max_steps below the checkpoint",
    cpc("train", TINY, "--run-dir", run, "--resume", *FAST, "train.max_steps=5", "train.log_every=5"),
    "max_steps",
)
run2 = out / "run-dup"  # logged step 15, checkpointed 10, killed: resume must not log 15 twice
keep = ["train.max_steps=15", "train.log_every=5", "train.checkpoint_every=10", "train.keep_checkpoints=3"]
cpc("train", TINY, "--run-dir", run2, *FAST, *keep)
shutil.copy(run2 / "checkpoints" / "step_10.pt", run2 / "checkpoints" / "last.pt")
cpc("train", TINY, "--run-dir", run2, "--resume", *FAST, *keep)
steps = (
    [
        (json.loads(l)["step"], json.loads(l).get("split", "train"))
        for l in (run2 / "metrics.jsonl").read_text().splitlines()
        if l.strip()
    ]
    if (run2 / "metrics.jsonl").exists()
    else []
)
check("metrics.jsonl after a resume", bool(steps) and steps == sorted(set(steps)), f"logged steps {steps}")
verdict("train.max_steps=0", cpc("train", TINY, "--run-dir", out / "r0", *FAST, "train.max_steps=0"), "max_steps")
verdict(
    "data.window=1600 with K = 12",
    cpc(
        "train",
        TINY,
        "--run-dir",
        out / "r1",
        "data.window=1600",
        "data.num_workers=0",
        "train.max_steps=2",
        "train.progress=false",
    ),
    "data.window",
)
lines = (sample / "abx" / "test.item").read_text().splitlines()
(out / "few.item").write_text("\n".join(lines[:12]) + "\n")
r = cpc("abx", "--features", "mfcc", "--data", sample, "--item", out / "few.item", "--json", out / "abx.json")
check(
    "abx with a couple of cells",
    "cells" in (r.stdout + r.stderr).lower() and "warn" in r.stderr.lower(),
    last_line(r.stderr),
)
first = lines[1].split()
first[1] = "-0.5"
(out / "negative.item").write_text("\n".join([lines[0], " ".join(first)] + lines[2:]) + "\n")
r = cpc("abx", "--features", "mfcc", "--data", sample, "--item", out / "negative.item", "--json", out / "abx2.json")
results.append(
    (
        "abx item onset before 0",
        "traceback" if "Traceback" in r.stderr else ("fine" if "-0.5" in r.stderr else "silent"),
        r.returncode,
        last_line(r.stderr)[:170],
    )
)

# --- tracebacks before
(out / "bad.yaml").write_text("model:\n  encoder: {norm: channel\n")
verdict("YAML syntax error in a recipe", cpc("train", out / "bad.yaml", "--run-dir", out / "r2"), "yaml")
verdict(
    "train.device=cuda without a GPU", cpc("train", TINY, "--run-dir", out / "r3", *FAST, "train.device=cuda"), "cuda"
)
verdict(
    "probe --device cuda without a GPU",
    cpc("probe", "phone", "--features", "random", "--data", sample, "--json", out / "p.json", "--device", "cuda"),
    "cuda",
)
(out / "adir").mkdir()
verdict(
    "probe --json is a directory",
    cpc("probe", "phone", "--features", "mfcc", "--data", sample, "--json", out / "adir"),
    "adir",
)
verdict(
    "probe --json in a read-only place",
    cpc("probe", "phone", "--features", "mfcc", "--data", sample, "--json", "/proc/cpc.json"),
    "/proc/cpc.json",
)
p = subprocess.Popen(
    [
        PY,
        "-m",
        "cpc.cli",
        "train",
        TINY,
        "--run-dir",
        str(out / "rc"),
        *FAST,
        "train.max_steps=100000",
        "train.checkpoint_every=5",
    ],
    cwd=checkout,
    env=env,
    stderr=subprocess.PIPE,
    text=True,
    preexec_fn=DFL,
)
deadline = time.time() + 180
while not (out / "rc" / "checkpoints" / "last.pt").exists() and time.time() < deadline and p.poll() is None:
    time.sleep(0.2)
time.sleep(1)
p.send_signal(signal.SIGINT)
err = p.communicate(timeout=60)[1]
results.append(
    (
        "Ctrl-C during training",
        "traceback" if "Traceback" in err else ("clear" if "resume" in last_line(err) else "cryptic"),
        p.returncode,
        last_line(err)[:170],
    )
)
(out / "afile").write_text("")
verdict("--run-dir names a file", cpc("train", TINY, "--run-dir", out / "afile", *FAST, "train.max_steps=2"), "afile")
verdict(
    "read-only run directory",
    cpc("train", TINY, "--run-dir", "/proc/cpc-run", *FAST, "train.max_steps=2"),
    "/proc/cpc-run",
)
verdict("data synth --hours inf", cpc("data", "synth", "--out", out / "inf", "--hours", "inf"), "hours")
outside = out / "elsewhere"
outside.mkdir()
verdict(
    "bench train outside the checkout",
    cpc(
        "bench",
        "train",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--skip-copied",
        "train.batch_size=2",
        "data.window=4096",
        cwd=outside,
    ),
    silent_ok=True,
)
verdict("bench train, missing recipe", cpc("bench", "train", "--recipe", "nowhere.yaml"), "nowhere")
verdict("bench train --steps 0", cpc("bench", "train", "--recipe", TINY, "--steps", "0", "--skip-copied"), "steps")
verdict(
    "probe speaker --crop-frames 0",
    cpc("probe", "speaker", "--features", "mfcc", "--data", sample, "--json", out / "s.json", "--crop-frames", "0"),
    "crop",
)
verdict(
    "data.window=0", cpc("train", TINY, "--run-dir", out / "w0", "data.window=0", "data.num_workers=0"), "data.window"
)
verdict(
    "data.window=100",
    cpc("train", TINY, "--run-dir", out / "w100", "data.window=100", "data.num_workers=0"),
    "data.window",
)
verdict("train.batch_size=0", cpc("train", TINY, "--run-dir", out / "b0", *FAST, "train.batch_size=0"), "batch_size")
p = subprocess.Popen(
    [PY, "-m", "cpc.cli", "data", "synth", "--out", str(out / "partial"), "--hours", "0.3"],
    cwd=checkout,
    env=env,
    stderr=subprocess.PIPE,
    text=True,
    start_new_session=True,
    preexec_fn=DFL,
)
time.sleep(8)
os.killpg(p.pid, signal.SIGINT)
err = p.communicate(timeout=60)[1]
results.append(
    ("Ctrl-C during data synth", "traceback" if "Traceback" in err else "clear", p.returncode, last_line(err)[:170])
)
verdict(
    "data synth rerun on the partial folder",
    cpc("data", "synth", "--out", out / "partial", "--hours", "0.3"),
    silent_ok=True,
)


# --- trust: checkpoints that run code, folders with two writers, writes through links, silently wrong inputs
def py(code, timeout=600):
    """A Python API call as a user makes it: an exception is printed on one line (type: message), exit 2."""
    wrapped = (
        "import sys\ntry:\n"
        + "".join(f"    {line}\n" for line in code.splitlines())
        + "except Exception as error:\n    print(f'{type(error).__name__}: {error}'.replace(chr(10), ' '), file=sys.stderr); sys.exit(2)\n"
    )
    return subprocess.run([PY, "-c", wrapped], cwd=checkout, env=env, capture_output=True, text=True, timeout=timeout)


def lost(name, r, intact):
    """Data loss when ``intact`` is False; else the usual verdict (a refusal or a right behaviour)."""
    if not intact:
        results.append((name, "lost", r.returncode, last_line(r.stderr)[:170]))
    else:
        verdict(name, r, silent_ok=True)


last = run / "checkpoints" / "last.pt"
marker = out / "MARKER"
evil = out / "evil.pt"
py(
    f"import torch\nstate = torch.load({str(last)!r}, weights_only=False)\nclass Payload:\n    def __reduce__(self):\n"
    f"        return (open, ({str(marker)!r}, 'w'))\nstate['extra'] = Payload()\ntorch.save(state, {str(evil)!r})"
)


def crafted(name, r):
    ran = marker.exists()
    marker.unlink(missing_ok=True)
    if ran:
        results.append((name, "ran code", r.returncode, last_line(r.stderr)[:170]))
    else:
        verdict(name, r, "can run code")


crafted(
    "crafted checkpoint: cpc extract", cpc("extract", evil, "--data", sample, "--out", out / "evil-x", "--no-progress")
)
crafted(
    "crafted checkpoint: cpc export", cpc("export", evil, "--format", "torchscript", "--out", out / "evil-export.pt")
)
crafted(
    "crafted checkpoint: cpc probe speaker", cpc("probe", "speaker", "--features", evil, "--data", sample, "--no-cache")
)
crafted("crafted checkpoint: cpc.load", py(f"import cpc\ncpc.load({str(evil)!r})"))
crafted("crafted checkpoint: s3prl upstream", py(f"from cpc.upstream import CPCUpstream\nCPCUpstream({str(evil)!r})"))
(out / "evil-run" / "checkpoints").mkdir(parents=True)
shutil.copy(evil, out / "evil-run" / "checkpoints" / "last.pt")
crafted(
    "crafted checkpoint: cpc train --resume",
    cpc("train", TINY, "--run-dir", out / "evil-run", "--resume", *FAST, "train.max_steps=12"),
)

image = out / "image.pt"
py(
    "import torch\nfrom cpc.config import load_config, to_container\nfrom cpc.model import build_model\nfrom cpc.checkpoint import FORMAT_VERSION\n"
    "config = load_config('image/fashion_mnist')\n"
    f"torch.save({{'format_version': FORMAT_VERSION, 'config': to_container(config), 'model': build_model(config).state_dict(), 'step': 0}}, {str(image)!r})"
)
verdict(
    "image checkpoint to cpc probe phone",
    cpc("probe", "phone", "--features", image, "--data", sample, "--no-cache"),
    "speech",
)
verdict("image checkpoint to cpc abx", cpc("abx", "--features", image, "--data", sample, "--no-cache"), "speech")
verdict(
    "image checkpoint as --architecture of random",
    cpc("probe", "speaker", "--features", "random", "--architecture", image, "--data", sample, "--no-cache"),
    "speech",
)
verdict(
    "image checkpoint to the s3prl upstream",
    py(f"import torch\nfrom cpc.upstream import CPCUpstream\nCPCUpstream({str(image)!r})([torch.zeros(16000)])"),
    "speech",
)
verdict(
    "cpc bench extract of an image recipe",
    cpc("bench", "extract", "--recipe", "image/fashion_mnist", "--runs", "1", "--warmup", "0"),
    "speech",
)

busy = out / "busy"  # two trainings started together into one folder
both = [
    subprocess.Popen(
        [PY, "-m", "cpc.cli", "train", TINY, "--run-dir", str(busy), *FAST, "train.max_steps=30", "train.log_every=5"],
        cwd=checkout,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    for _ in range(2)
]
errors = [p.communicate(timeout=600)[1] for p in both]
codes = [p.returncode for p in both]
refused = [e for p, e in zip(both, errors) if p.returncode != 0]
if codes.count(0) == 2:
    results.append(("two cpc train into one --run-dir", "lost", 0, "both exited 0"))
elif codes.count(0) == 1 and "Traceback" not in refused[0]:
    results.append(
        (
            "two cpc train into one --run-dir",
            "clear" if ".train.lock" in last_line(refused[0]) else "cryptic",
            2,
            last_line(refused[0])[:170],
        )
    )
else:
    results.append(
        (
            "two cpc train into one --run-dir",
            "traceback" if any("Traceback" in e for e in errors) else "cryptic",
            codes,
            last_line(errors[-1])[:170],
        )
    )
stale = out / "stale"
stale.mkdir()
(stale / "metrics.jsonl").write_text('{"step": 990, "loss": 4.0}\n{"step": 1000, "loss": 4.0}\n')
verdict(
    "fresh run into a folder with a stale metrics.jsonl",
    cpc("train", TINY, "--run-dir", stale, *FAST, "train.max_steps=2"),
    "metrics.jsonl",
)

victim = out / "victim.txt"


def plant(link):
    victim.write_text("precious\n")
    if link.exists() or link.is_symlink():
        link.unlink()
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(victim)


plant(out / "linked-fresh" / "metrics.jsonl")
r = cpc("train", TINY, "--run-dir", out / "linked-fresh", *FAST, "train.max_steps=2")
lost("symlinked metrics.jsonl in a fresh run", r, victim.read_bytes() == b"precious\n")
shutil.copytree(run, out / "linked")
plant(out / "linked" / "config.yaml")
r = cpc("train", TINY, "--run-dir", out / "linked", "--resume", *FAST, "train.max_steps=14")
lost("symlinked config.yaml in a resumed run", r, victim.read_bytes() == b"precious\n")
for name, fmt in ((".extract.lock", "npy"), ("feats.ark", "kaldi")):
    plant(out / f"linked-{fmt}" / name)
    r = cpc("extract", last, "--data", sample, "--out", out / f"linked-{fmt}", "--format", fmt, "--no-progress")
    lost(f"symlinked {name} in the extract --out", r, victim.read_bytes() == b"precious\n")
shutil.copy(last, out / "keep.pt")
before = (out / "keep.pt").read_bytes()
r = cpc("export", out / "keep.pt", "--format", "torchscript", "--out", out / "keep.pt")
lost("cpc export CKPT --out CKPT", r, (out / "keep.pt").read_bytes() == before)

nan_corpus = out / "nan"
nan_corpus.mkdir()
rng = np.random.default_rng(0)
for i in range(3):
    sf.write(
        nan_corpus / f"100-1-{i:04d}.wav", (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000, subtype="FLOAT"
    )
x, sr = sf.read(nan_corpus / "100-1-0001.wav", dtype="float32")
x[500:510] = np.nan
sf.write(nan_corpus / "100-1-0001.wav", x, sr, subtype="FLOAT")
r = cpc("extract", last, "--data", nan_corpus, "--out", out / "nan-x", "--no-progress")
nan_out = [f.name for f in (out / "nan-x").glob("*.npy") if np.isnan(np.load(f)).any()]
check(
    "ten NaN samples in one WAV (extract)",
    not nan_out and "100-1-0001" in r.stderr,
    f"NaN features in {nan_out}; {last_line(r.stderr)}",
)
changed = out / "changed"
shutil.copytree(nan_corpus, changed)
(changed / "100-1-0001.wav").unlink()
cpc("extract", last, "--data", changed, "--out", out / "changed-x", "--no-progress")
sf.write(changed / "100-1-0000.wav", (0.1 * rng.standard_normal(48000)).astype(np.float32), 16000, subtype="FLOAT")
cpc("extract", last, "--data", changed, "--out", out / "changed-x", "--no-progress")
frames = len(np.load(out / "changed-x" / "100-1-0000.npy"))
check("extract rerun after an audio file changed", frames > 200, f"{frames} frames for a file now 3 s long")
(changed / "100-1-0009.wav").symlink_to(out / "nowhere.wav")
cpc("extract", last, "--data", changed, "--out", out / "dangling-x", "--no-progress")
summary = (
    json.loads((out / "dangling-x" / "extract.json").read_text())
    if (out / "dangling-x" / "extract.json").exists()
    else {}
)
check("a dangling link in --data", summary.get("counts", {}).get("unreadable") == 1, f"counts {summary.get('counts')}")
verdict(
    "--data names one WAV file",
    cpc("extract", last, "--data", changed / "100-1-0002.wav", "--out", out / "one-x", "--no-progress"),
    "100-1-0002.wav",
    silent_ok=True,
)
(out / "empty.yaml").write_text("")
verdict("an empty recipe", cpc("train", out / "empty.yaml", "--print-config"), "empty")
(out / "list.yaml").write_text("- model\n- data\n")
verdict("a recipe whose top level is a list", cpc("train", out / "list.yaml", "--run-dir", out / "rl"), "list")
verdict(
    "data.patch_stride=0",
    cpc("train", "image/fashion_mnist", "--run-dir", out / "ps0", "data.patch_stride=0"),
    "patch_stride",
)
verdict(
    "data.patch_size=40 (larger than the padded image)",
    cpc("train", "image/fashion_mnist", "--run-dir", out / "ps40", "data.patch_size=40"),
    "patch_size",
)
model_code = f"import torch, cpc\nmodel = cpc.load({str(last)!r})\n"
verdict("extract_features on 100 samples", py(model_code + "model.extract_features(torch.zeros(1, 100))"), "samples")
verdict("extract_features on 0 samples", py(model_code + "model.extract_features(torch.zeros(1, 0))"), "samples")
verdict(
    "extract_features on int16 audio",
    py(model_code + "model.extract_features(torch.zeros(1, 16000, dtype=torch.int16))"),
    "int16",
)
verdict(
    "upstream on 100 samples",
    py(f"import torch\nfrom cpc.upstream import CPCUpstream\nCPCUpstream({str(last)!r})([torch.zeros(100)])"),
    "samples",
)
text = out / "text"
text.mkdir()
(text / "mr.tsv").write_text(
    "".join(f"{i % 2}\tsentence {i} was {'good' if i % 2 else 'bad'}\n" for i in range(40)) + "1\t \n"
)
r = cpc("probe", "text", "--features", "bow", "--data", text)
check("an empty sentence in a text probe set", "empty" in r.stderr and r.returncode == 0, last_line(r.stderr))
verdict("speech checkpoint to cpc probe text", cpc("probe", "text", "--features", last, "--data", text), "text model")
verdict(
    "cpc probe text --folds 0", cpc("probe", "text", "--features", "bow", "--data", text, "--folds", "0"), "--folds"
)
(text / "political.tsv").write_text("".join(f"{int(i < 36)}\tspeech {i}\n" for i in range(40)))
verdict(
    "cpc probe text on a set with a 4-example class",
    cpc("probe", "text", "--features", "bow", "--data", text, "--task", "political"),
    "class",
)

width = max(len(n) for n, *_ in results)
for name, v, code, line in results:
    print(f"{name:<{width}}  {v:<9}  rc={code}  {line}")
print(dict(Counter(v for _, v, *_ in results)))
json.dump(results, open(out / "battery.json", "w"), indent=1)
