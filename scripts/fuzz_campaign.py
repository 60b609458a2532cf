"""The long fuzzing campaign: the generators of tests/test_fuzz.py and tests/test_fuzz_cli.py, run for
100,000+ cases.

Five families (``--family``, repeatable; by default the front end's three, ``grammar``, ``mutants`` and
``commented``, as before the other two existed):

* ``grammar``: programs drawn from archdsl's grammar; ``commented``: the same with comments and line breaks
  dropped between tokens; ``mutants``: mutated specs. Each must compile or raise one ArchError with its
  place (the oracle of tests/test_fuzz.py); a program that parses must also survive the formatter's round
  trip (tests/test_formatter.py).
* ``paths``: specs whose import paths are mutated, or whose imported file is swapped for a hostile kind
  (tests/fuzz_paths.py), under the same oracle.
* ``cli``: argvs for every subcommand and option, run in-process in a scratch folder under the
  command-line oracle of tests/test_fuzz_cli.py (exit status, no traceback, nothing written outside,
  nothing destroyed that the argv does not name).

Unlike the tests, the campaign does not stop at the first failure: it counts every outcome and keeps one
example of each distinct failure, then prints a report (and writes it with --report) for
docs/reliability.md. Families take turns, a chunk of cases each (fewer for the slow command line).

    python scripts/fuzz_campaign.py --cases 100000                     # the front end's three families
    OMP_NUM_THREADS=1 python scripts/fuzz_campaign.py --family cli --family paths --seconds 900 --report fuzz.json

Exit status 1 when anything failed.
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import fuzz_paths
import test_formatter
import test_fuzz
import test_fuzz_cli
from hypothesis import HealthCheck, Phase, given, seed, settings

# Cases per Hypothesis run, by family; the time budget is checked between runs.
CHUNKS = {"grammar": 1000, "mutants": 1000, "commented": 1000, "paths": 1000, "cli": 50}
FRONT_END = ["grammar", "mutants", "commented"]


class Campaign:
    def __init__(self) -> None:
        self.cases = collections.Counter()  # generator -> cases run
        self.outcomes = collections.Counter()  # (generator, outcome) -> count
        self.round_trips = 0
        self.failures: dict[str, dict] = {}  # signature -> first example
        self.failure_count = 0

    def run_case(self, generator: str, check) -> None:
        self.cases[generator] += 1
        try:
            result = check()
        except (Exception, fuzz_paths.Hang) as err:  # noqa: BLE001 (the campaign's point is to catch anything)
            self.failure_count += 1
            frame = traceback.extract_tb(err.__traceback__)[-1]
            # The command-line oracle names its failures (one AssertionError line would merge them all).
            signature = getattr(err, "signature", None) or f"{type(err).__name__} at {Path(frame.filename).name}:{frame.lineno}"
            self.failures.setdefault(signature, {"generator": generator, "error": f"{type(err).__name__}: {err}"[:2000],
                                                 "input": repr(self.current)[:4000]})
            self.outcomes[(generator, "FAILURE")] += 1
        else:
            self.outcomes[(generator, result)] += 1

    def grammar(self, text: str) -> str:
        self.current = text
        result = test_fuzz.outcome(lambda: test_fuzz.compile_text(text))
        if test_formatter.check_round_trip(text):
            self.round_trips += 1
        return result

    def mutant(self, folder: Path, name: str, data: bytes) -> str:
        self.current = (name, data)
        result = test_fuzz.compile_mutant(folder, name, data)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return result
        if test_formatter.check_round_trip(text):
            self.round_trips += 1
        return result

    def path_case(self, folder: Path, case: fuzz_paths.PathCase) -> str:
        self.current = case
        return fuzz_paths.compile_path_case(folder, case)

    def command_line(self, workspace: test_fuzz_cli.Workspace, argv: list[str]) -> str:
        self.current = argv
        return workspace.run(argv).label

    def report(self, seconds: float, first_seed: int) -> dict:
        return {
            "cases": sum(self.cases.values()),
            "by_generator": dict(self.cases),
            "outcomes": {f"{g}: {o}": n for (g, o), n in sorted(self.outcomes.items())},
            "formatter_round_trips": self.round_trips,
            "failures": self.failure_count,
            "distinct_failures": self.failures,
            "seconds": round(seconds, 1),
            "first_seed": first_seed,
            "machine": f"{platform.python_implementation()} {platform.python_version()} on {platform.machine()}",
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000, help="total cases (default 100,000)")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long, whatever the count")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="first seed (each chunk adds one)")
    parser.add_argument("--family", action="append", choices=list(CHUNKS),
                        help="a family of generators to run (repeatable; default: grammar, mutants, commented)")
    parser.add_argument("--report", type=Path, default=None, help="also write the report as JSON here")
    args = parser.parse_args()
    families = args.family or FRONT_END

    campaign = Campaign()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "specs"
        shutil.copytree(test_fuzz.SPECS, folder)
        sources = {
            "grammar": (test_fuzz.grammar_programs(), campaign.grammar),
            "mutants": (test_fuzz.spec_mutants(), lambda mutant: campaign.mutant(folder, *mutant)),
            "commented": (test_formatter.commented_programs(), campaign.grammar),
        }
        if "paths" in families:
            hostile = fuzz_paths.path_folder(Path(tmp) / "paths")
            sources["paths"] = (fuzz_paths.path_mutants(), lambda case: campaign.path_case(hostile, case))
        if "cli" in families:
            workspace = test_fuzz_cli.Workspace(Path(tmp) / "cli")
            sources["cli"] = (test_fuzz_cli.command_lines(), lambda argv: campaign.command_line(workspace, argv))
        chunks = [_chunk(campaign, family, *sources[family]) for family in families]
        chunk = 0
        while sum(campaign.cases.values()) < args.cases:
            if args.seconds is not None and time.perf_counter() - start > args.seconds:
                break
            run = chunks[chunk % len(chunks)]
            seed(args.seed + chunk)(run)()
            chunk += 1
            done = sum(campaign.cases.values())
            print(f"{done:>7} cases, {campaign.failure_count} failures, {time.perf_counter() - start:7.0f} s",
                  file=sys.stderr, flush=True)

    report = campaign.report(time.perf_counter() - start, args.seed)
    report["families"] = families
    text = json.dumps(report, indent=1)
    print(text)
    if args.report is not None:
        args.report.write_text(text + "\n")
    return 1 if campaign.failure_count else 0


def _chunk(campaign: Campaign, family: str, strategy, check):
    """One Hypothesis run of ``CHUNKS[family]`` cases of a family, every outcome counted."""

    @settings(max_examples=CHUNKS[family], deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(case):
        campaign.run_case(family, lambda: check(case))

    return run


if __name__ == "__main__":
    sys.exit(main())
