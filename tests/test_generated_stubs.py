"""The committed charging.v1 stubs are exactly what proto/ generates (never hand-edited, never stale)."""

from grid import protogen


def test_generated_stubs_match_the_proto():
    assert protogen.stale_files() == [], "run: python -m grid.protogen"
