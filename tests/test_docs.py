"""The README stays true: its API table is the schema's, and every image it shows exists."""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_api_table_lists_every_operation_of_the_schema():
    sys.path.insert(0, str(ROOT / "docs"))
    import make_api_table

    want = make_api_table.table(make_api_table.schema())
    got = make_api_table.readme_table((ROOT / "README.md").read_text())
    assert got == want, "README.md's API table is stale: run `.venv/bin/python docs/make_api_table.py` and " \
                        "paste its output under ## API"


def test_every_image_the_readme_shows_exists():
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (ROOT / "README.md").read_text())
    assert images, "the walkthrough has screenshots"
    assert [i for i in images if not (ROOT / i).is_file()] == []
