"""The committed gRPC modules are what ``python -m proto.generate`` produces now."""

from proto.generate import stale_files


def test_generated_modules_are_current() -> None:
    stale = stale_files()
    assert stale == [], f"regenerate with `python -m proto.generate`: {stale}"
