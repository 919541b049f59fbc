"""Every Upstox and FMP recording, and every sample of our own, is replayed by some test."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[2]
OWN = Path(__file__).parent / "fixtures"


def _sources() -> str:
    return "\n".join(p.read_text() for p in TESTS.rglob("test_*.py") if p != Path(__file__))


def test_every_upstox_and_fmp_fixture_is_replayed(provider_fixtures):
    text = _sources()
    files = [
        *sorted((provider_fixtures / "upstox").glob("*.json")),
        *sorted((provider_fixtures / "fmp").glob("*.json")),
        *sorted(OWN.rglob("*.json")),
    ]
    assert len(files) >= 16
    unused = [str(f) for f in files if f.name not in text]
    assert unused == []


def test_own_samples_say_what_they_are():
    for f in OWN.rglob("*.json"):
        assert f.name.startswith(("written_from_docs_", "doc_sample_")), f
