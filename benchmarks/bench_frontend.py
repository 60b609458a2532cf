"""Front-end and backend benchmarks for the compiler (issue 2), printed as Markdown tables.

    python benchmarks/bench_frontend.py            # everything (a few minutes on 2 cores)
    python benchmarks/bench_frontend.py --quick    # fewer repetitions

1. parse + shape inference per spec, and on generated specs of 100, 1,000 and 10,000 layers;
2. the static summary against torchinfo's ``summary`` (the peer), in-process (torchinfo on the meta
   device) and as whole commands (``archdsl compile`` against a script that imports torch and prints
   torchinfo's summary);
3. the same for the zoo (issue 12): ``archdsl compile NAME`` and its summary against torchinfo's of
   torchvision's model, built on the meta device (``--only zoo``), the transformers (issue 13) among them;
4. forward+backward step time of the built module against the hand-written reference (tests/references.py),
   and of the zoo's vit_b_16 against torchvision's (``--only steps``).

torchinfo and torchvision are test-only dependencies (the test extra; ``pip install torchvision==0.28.0
--no-deps``); without them those rows say so.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from timing import ARCHDSL, command_time, median_seconds

import archdsl
import archdsl.zoo
from archdsl import parser, summary

SPECS = ["lenet", "alexnet", "vgg11", "vgg16", "vgg19", "nin", "googlenet", "resnet18", "densenet"]
PEER_SPECS = ["vgg16", "googlenet", "resnet18", "densenet"]
ZOO_NAMES = ["resnet50", "efficientnet_b0", "mobilenet_v3_large", "convnext_tiny", "regnet_y_400mf", "vit_b_16", "swin_t"]


def generated_spec(layers: int) -> str:
    """A flat chain of ``layers`` layers: same-padded 3x3 convolutions and ReLUs on 8×16×16."""
    items = ["conv3x3 8" if i % 2 == 0 else "relu" for i in range(layers)]
    return "network chain : [8, 16, 16] =\n    " + ";\n    ".join(items) + "\n"


def cold(fn):
    """``fn`` with archdsl's parse cache emptied first: the spec and its imports are parsed again."""

    def run():
        parser.clear_cache()
        return fn()

    return run


def front_end(repeat: int) -> list[str]:
    rows = ["| spec | layers | parse + inference (ms) | per layer (µs) | inference, parse cached (ms) |",
            "|---|---:|---:|---:|---:|"]
    for name in SPECS:
        path = ROOT / "specs" / f"{name}.arch"
        net = archdsl.load(path)
        count = sum(1 for _ in net.layers())
        seconds = median_seconds(cold(lambda: archdsl.load(path)), repeat)
        warm = median_seconds(lambda: archdsl.load(path), repeat)
        rows.append(f"| {name} | {count} | {seconds * 1e3:.2f} | {seconds / count * 1e6:.1f} | {warm * 1e3:.2f} |")
    for layers in (100, 1_000, 10_000):
        text = generated_spec(layers)
        seconds = median_seconds(cold(lambda: archdsl.loads(text)), max(3, repeat // 4))
        warm = median_seconds(lambda: archdsl.loads(text), max(3, repeat // 4))
        rows.append(f"| generated | {layers:,} | {seconds * 1e3:.1f} | {seconds / layers * 1e6:.1f} | {warm * 1e3:.1f} |")
    return rows


def symbolic(repeat: int) -> list[str]:
    """Shape inference at a symbolic input 1×H×W against the same at the declared concrete input."""
    from archdsl.symbolic import Sym

    shape = (1, Sym.symbol("H"), Sym.symbol("W"))
    rows = ["| spec | concrete (ms) | symbolic 1×H×W (ms) | ratio |", "|---|---:|---:|---:|"]
    # The spec is parsed once (cached): what is compared is inference alone.
    for name in ("googlenet", "densenet", "resnet18", "vgg16"):
        path = ROOT / "specs" / f"{name}.arch"
        concrete = median_seconds(lambda: archdsl.load(path), repeat)
        symbolic_time = median_seconds(lambda: archdsl.load(path, input_shape=shape), repeat)
        rows.append(f"| {name} | {concrete * 1e3:.2f} | {symbolic_time * 1e3:.2f} | {symbolic_time / concrete:.2f}× |")
    return rows


def torchinfo_in_process(factory, shape: tuple[int, ...], repeat: int) -> float:
    """A model from ``factory`` on the meta device to torchinfo's summary text."""
    import torch
    from torchinfo import summary as torchinfo_summary

    def run() -> None:
        with torch.device("meta"):
            model = factory()
        text = str(torchinfo_summary(model, input_size=(1, *shape), device="meta", depth=10, verbose=0))
        assert "Total params" in text

    return median_seconds(run, repeat)


def archdsl_in_process(spec: str | Path, repeat: int) -> tuple[float, float]:
    """A spec (a file, or a zoo name) to summary text: with the spec and its imports parsed again each time,
    and with them cached."""

    def run() -> None:
        net = archdsl.load(spec)
        text = summary.render_text(net.ir)
        assert "params" in text

    return median_seconds(cold(run), repeat), median_seconds(run, repeat)


# The peer as a whole command: torch, the model's definition and torchinfo imported, the model built on the meta
# device, its summary printed. `reference NAME` is a hand-written model of tests/references.py; `zoo NAME CxHxW`
# torchvision's (set up by tests/torchvision_oracle.py, as the tests import it).
TORCHINFO_SCRIPT = """
import sys, torch
from torchinfo import summary
sys.path.insert(0, {tests!r})
if sys.argv[1] == "zoo":
    from torchvision_oracle import on_meta
    model, shape = on_meta(sys.argv[2]), tuple(int(size) for size in sys.argv[3].split("x"))
else:
    from references import REFERENCES
    factory, shape = REFERENCES[sys.argv[2]]
    with torch.device("meta"):
        model = factory()
summary(model, input_size=(1, *shape), device="meta", depth=10)
"""


def write_bytecode() -> None:
    """Compile archdsl's modules and the reference models to bytecode, as an installed package has them.

    pip compiles a package when it installs it (torch and torchinfo were); an editable install leaves that
    to the first import, which writes nothing where PYTHONDONTWRITEBYTECODE is set, as on this project's
    machines. Every archdsl command would then compile archdsl's sources again (about 25 ms)."""
    import compileall

    compileall.compile_dir(ROOT / "archdsl", quiet=1)
    for helper in ("references.py", "torchvision_oracle.py"):
        compileall.compile_file(ROOT / "tests" / helper, quiet=1)


PEER_HEADER = [
    ("| {what} | archdsl in-process, parsing (ms) | archdsl in-process, parse cached (ms) | torchinfo in-process, meta "
     "(ms) | ratio, parsing | ratio, parse cached | `archdsl compile` (ms) | torch + {peer} + torchinfo script (ms) "
     "| ratio |"),
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
]


def peer_rows(cases, repeat: int) -> list[str]:
    """A row per case (name, spec, factory, input shape, the script's arguments): archdsl's summary of the spec
    against torchinfo's of the factory's model, in process and as whole commands."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "torchinfo_summary.py"
        script.write_text(TORCHINFO_SCRIPT.format(tests=str(ROOT / "tests")))
        for name, spec, factory, shape, script_args in cases:
            ours, ours_cached = archdsl_in_process(spec, repeat)
            theirs = torchinfo_in_process(factory, shape, repeat)
            ours_cmd = command_time([ARCHDSL, "compile", str(spec)], max(3, repeat // 4))
            theirs_cmd = command_time([sys.executable, str(script), *script_args], max(3, repeat // 4))
            rows.append(
                f"| {name} | {ours * 1e3:.2f} | {ours_cached * 1e3:.2f} | {theirs * 1e3:.1f} | {theirs / ours:.1f}× | "
                f"{theirs / ours_cached:.1f}× | {ours_cmd * 1e3:.0f} | {theirs_cmd * 1e3:.0f} | {theirs_cmd / ours_cmd:.1f}× |"
            )
    return rows


def peers(repeat: int) -> list[str]:
    """The book's specs against their hand-written models (tests/references.py)."""
    try:
        import torchinfo  # noqa: F401
    except ImportError:
        return ["torchinfo is not installed (`pip install torchinfo`): peer comparison not measured."]
    from references import REFERENCES

    cases = [(name, ROOT / "specs" / f"{name}.arch", REFERENCES[name][0], REFERENCES[name][1], ["reference", name])
             for name in PEER_SPECS]
    header = [PEER_HEADER[0].format(what="spec", peer="model"), PEER_HEADER[1]]
    return header + peer_rows(cases, repeat)


def zoo(repeat: int) -> list[str]:
    """The zoo's networks by name against torchvision's models (issue 12)."""
    try:
        import torchinfo  # noqa: F401
        import torchvision_oracle
    except ImportError:
        return ["torchinfo is not installed (`pip install torchinfo`): zoo comparison not measured."]
    if not torchvision_oracle.available():
        return [f"torchvision is not installed ({torchvision_oracle.INSTALL_HINT}): zoo comparison not measured."]
    torchvision_oracle.import_torchvision()
    cases = []
    for name in ZOO_NAMES:
        shape = archdsl.load(name).input_shape
        size = "x".join(map(str, shape))
        cases.append((name, name, lambda name=name: torchvision_oracle.on_meta(name), shape, ["zoo", name, size]))
    header = [PEER_HEADER[0].format(what="network", peer="torchvision"), PEER_HEADER[1]]
    listing = command_time([ARCHDSL, "zoo"], max(3, repeat // 4))
    return [*header, *peer_rows(cases, repeat), "",
            f"`archdsl zoo` (compiles all {len(archdsl.zoo.index())} networks): {listing * 1e3:.0f} ms."]


STARTUP_STEPS = [
    ("Python, nothing imported", "pass"),
    ("+ pydantic and one model class", ("from pydantic import BaseModel, ConfigDict\n"
     "class A(BaseModel):\n    model_config = ConfigDict(defer_build=True)\n    x: int")),
    ("+ lark", ("import lark\nfrom pydantic import BaseModel, ConfigDict\n"
     "class A(BaseModel):\n    model_config = ConfigDict(defer_build=True)\n    x: int")),
    ("`import archdsl` (IR, parser, resolver)", "import archdsl"),
    ("`import archdsl.cli` (+ click, the commands)", "import archdsl.cli"),
]


def startup(repeat: int) -> list[str]:
    """Where a whole ``archdsl compile`` goes: processes that import more and more of what it needs."""
    rows = ["| process | median (ms) |", "|---|---:|"]
    for label, code in STARTUP_STEPS:
        rows.append(f"| {label} | {command_time([sys.executable, '-c', code], repeat) * 1e3:.0f} |")
    whole = command_time([ARCHDSL, "compile", str(ROOT / "specs" / "vgg16.arch")], repeat)
    rows.append(f"| `archdsl compile specs/vgg16.arch` | {whole * 1e3:.0f} |")
    return rows


def step_times(repeat: int) -> list[str]:
    import torch
    from references import REFERENCES

    torch.manual_seed(0)
    rows = [
        "| spec | batch | reference step (ms) | archdsl step (ms) | ratio archdsl/reference |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in SPECS:
        factory, shape = REFERENCES[name]
        batch = 16 if name == "lenet" else 2
        ours = archdsl.load(ROOT / "specs" / f"{name}.arch").build()
        reference = factory()
        x = torch.randn(batch, *shape)
        y = torch.randint(0, 10, (batch,))
        loss_fn = torch.nn.CrossEntropyLoss()

        def step(model: torch.nn.Module) -> None:
            model.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()

        # Interleave the two so that drift in the machine's speed hits both alike.
        ref_times, our_times = [], []
        for model in (reference, ours):
            step(model)
        for _ in range(repeat):
            for model, times in ((reference, ref_times), (ours, our_times)):
                start = time.perf_counter()
                step(model)
                times.append(time.perf_counter() - start)
        ref, our = statistics.median(ref_times), statistics.median(our_times)
        rows.append(f"| {name} | {batch} | {ref * 1e3:.1f} | {our * 1e3:.1f} | {our / ref:.3f} |")
    return rows


def transformer_steps(repeat: int, batch: int = 8) -> list[str]:
    """The zoo's vit_b_16, built, against torchvision's vit_b_16: a forward+backward step at one batch on the CPU.

    The two run in turn, the order alternating; each pair gives a ratio, and the median of those ratios is
    reported with the medians and minima of the times, since other work on a shared machine slows single steps
    by seconds."""
    import torch

    try:
        import torchvision_oracle
    except ImportError:
        return ["tests/torchvision_oracle.py is missing: not measured."]
    if not torchvision_oracle.available():
        return [f"torchvision is not installed ({torchvision_oracle.INSTALL_HINT}): not measured."]
    models = torchvision_oracle.import_torchvision().models
    torch.manual_seed(0)
    ours, theirs = archdsl.load("vit_b_16").build(), models.vit_b_16()
    x, y = torch.randn(batch, 3, 224, 224), torch.randint(0, 1000, (batch,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(model: torch.nn.Module) -> float:
        start = time.perf_counter()
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        return time.perf_counter() - start

    for model in (theirs, ours):
        step(model)
    ref_times, our_times, ratios = [], [], []
    for index in range(repeat):
        if index % 2:
            our, ref = step(ours), step(theirs)
        else:
            ref, our = step(theirs), step(ours)
        ref_times.append(ref)
        our_times.append(our)
        ratios.append(our / ref)
    rows = ["| network | batch | threads | torchvision step, median / min (ms) | archdsl step, median / min (ms) | "
            "ratio archdsl/torchvision, median of pairs / of minima |", "|---|---:|---:|---:|---:|---:|"]
    rows.append(f"| vit_b_16 | {batch} | {torch.get_num_threads()} | {statistics.median(ref_times) * 1e3:.0f} / "
                f"{min(ref_times) * 1e3:.0f} | {statistics.median(our_times) * 1e3:.0f} / {min(our_times) * 1e3:.0f} | "
                f"{statistics.median(ratios):.3f} / {min(our_times) / min(ref_times):.3f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--only", choices=["frontend", "symbolic", "peers", "zoo", "startup", "steps"],
                        help="run one part")
    args = parser.parse_args()
    repeat = 5 if args.quick else 21
    out = io.StringIO()
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"archdsl {archdsl.__name__}; command: python benchmarks/bench_frontend.py{' --quick' if args.quick else ''}\n", file=out)
    if args.only in (None, "frontend"):
        print("### Parse + shape inference\n", file=out)
        print("\n".join(front_end(repeat)) + "\n", file=out)
    if args.only in (None, "symbolic"):
        print("### Symbolic against concrete shape inference\n", file=out)
        print("\n".join(symbolic(repeat)) + "\n", file=out)
    if args.only in (None, "peers", "zoo", "startup"):
        write_bytecode()
    if args.only in (None, "peers"):
        print("### Static summary against torchinfo\n", file=out)
        print("\n".join(peers(repeat)) + "\n", file=out)
    if args.only in (None, "zoo"):
        print("### The zoo: summary against torchinfo on torchvision's models\n", file=out)
        print("\n".join(zoo(repeat)) + "\n", file=out)
    if args.only in (None, "peers", "startup"):
        print("### Start-up of a whole command\n", file=out)
        print("\n".join(startup(repeat)) + "\n", file=out)
    if args.only in (None, "steps"):
        print("### Forward + backward step, built module against hand-written reference (CPU)\n", file=out)
        print("\n".join(step_times(7 if args.quick else 15)) + "\n", file=out)
        print("### Forward + backward step, the zoo's vit_b_16 against torchvision's (CPU)\n", file=out)
        print("\n".join(transformer_steps(7 if args.quick else 15)) + "\n", file=out)
    print(out.getvalue())


if __name__ == "__main__":
    main()
