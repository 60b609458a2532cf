"""The long fuzzing campaign: the generators of tests/test_fuzz.py, run for 100,000+ cases.

Each case is a program drawn from archdsl's grammar (as is, or with comments and line breaks dropped
between its tokens) or a mutated spec. It must compile or raise one ArchError with its place (the
oracle of tests/test_fuzz.py); a program that parses must also survive the formatter's round trip
(tests/test_formatter.py). Unlike the tests, the campaign does not stop at
the first failure: it counts every outcome and keeps one example of each distinct failure, then
prints a report (and writes it with --report) for docs/reliability.md.

    python scripts/fuzz_campaign.py --cases 100000              # about 20 minutes on one core
    python scripts/fuzz_campaign.py --cases 100000 --seconds 600 --report fuzz.json

Exit status 1 when anything failed.
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import test_formatter
import test_fuzz
from hypothesis import HealthCheck, Phase, given, seed, settings

CHUNK = 1000  # cases per Hypothesis run; the time budget is checked between runs


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
        except Exception as err:  # noqa: BLE001 (the campaign's point is to catch anything)
            self.failure_count += 1
            frame = traceback.extract_tb(err.__traceback__)[-1]
            signature = f"{type(err).__name__} at {Path(frame.filename).name}:{frame.lineno}"
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
    parser.add_argument("--report", type=Path, default=None, help="also write the report as JSON here")
    args = parser.parse_args()

    campaign = Campaign()
    settings_ = settings(max_examples=CHUNK, deadline=None, database=None, phases=[Phase.generate],
                         suppress_health_check=list(HealthCheck))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        import shutil

        shutil.copytree(test_fuzz.SPECS, folder, dirs_exist_ok=True)

        @settings_
        @given(test_fuzz.grammar_programs())
        def grammar_chunk(text):
            campaign.run_case("grammar", lambda: campaign.grammar(text))

        @settings_
        @given(test_fuzz.spec_mutants())
        def mutant_chunk(mutant):
            campaign.run_case("mutants", lambda: campaign.mutant(folder, *mutant))

        @settings_
        @given(test_formatter.commented_programs())
        def commented_chunk(text):
            campaign.run_case("commented", lambda: campaign.grammar(text))

        chunks = [grammar_chunk, mutant_chunk, commented_chunk]
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
    text = json.dumps(report, indent=1)
    print(text)
    if args.report is not None:
        args.report.write_text(text + "\n")
    return 1 if campaign.failure_count else 0


if __name__ == "__main__":
    sys.exit(main())
