"""Write archdsl/grammar_tables.json, the parser's LALR tables, after a change to archdsl/grammar.lark.

    python scripts/make_parser_tables.py            # rewrite the tables
    python scripts/make_parser_tables.py --check    # exit 1 if they are stale (tests/test_parser.py does this)

archdsl loads the tables instead of building them from the grammar at every start (5 ms against
150-300 ms). Stale tables are never used: the parser compares the grammar's digest and Lark's version
and builds from the grammar when either differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from archdsl.atomic import write_text_atomic  # noqa: E402
from archdsl.parser import GRAMMAR, TABLES, tables_are_current, tables_json  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the tables are current")
    args = parser.parse_args()
    current = tables_are_current()
    if args.check:
        if not current:
            print(f"{TABLES} is stale: run python scripts/make_parser_tables.py", file=sys.stderr)
        return 0 if current else 1
    if not current:  # Lark numbers the states differently from run to run: rewrite only when stale
        write_text_atomic(TABLES, tables_json(GRAMMAR.read_text()))
        print(f"wrote {TABLES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
