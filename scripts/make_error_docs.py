"""Write docs/errors.md, every error code with its explanation and examples, from archdsl/codes.py.

    python scripts/make_error_docs.py            # rewrite the page
    python scripts/make_error_docs.py --check    # exit 1 if it is stale (tests/test_codes.py checks it too)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from archdsl.atomic import write_text_atomic  # noqa: E402
from archdsl.codes import markdown  # noqa: E402

PAGE = REPO / "docs" / "errors.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the page is current")
    args = parser.parse_args()
    current = PAGE.exists() and PAGE.read_text(encoding="utf-8") == markdown()
    if args.check:
        print(f"{PAGE.relative_to(REPO)} is {'current' if current else 'stale'}")
        return 0 if current else 1
    if not current:
        write_text_atomic(PAGE, markdown())
        print(f"wrote {PAGE.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
