"""FMP against its documented sample and recorded error envelopes, over a loopback socket."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from replay_server import FakeClock, settings_for

from marketlake.errors import AuthError, RateLimitedError
from marketlake.pipeline.providers.base import FetchRequest, frame_schema, provider_class
from marketlake.pipeline.providers.fmp import FmpProvider, parse_dcf, parse_etf_list

OWN = Path(__file__).parent / "fixtures" / "fmp"
DCF = "/stable/discounted-cash-flow"
KEY = "fmp-test-key-0123456789"


@pytest.fixture
def fmp_dir(provider_fixtures):
    return provider_fixtures / "fmp"


@pytest.fixture
def fmp(replay, home):
    clock = FakeClock(datetime(2026, 5, 1, 1, 0, tzinfo=UTC))
    p = FmpProvider(
        settings_for("fmp", replay, max_retries=1, secret=KEY),
        home=home,
        clock=clock.now,
        sleep=clock.sleep,
    )
    yield p
    p.close()


def test_dcf_doc_sample_becomes_a_valuation_row(replay, fmp_dir, fmp):
    replay.add_file(DCF, fmp_dir / "doc_sample_stable_discounted_cash_flow_AAPL.json")
    out = fmp.fetch(FetchRequest.valuation("AAPL"))
    assert provider_class("fmp") is FmpProvider
    assert out.schema == frame_schema("valuation")
    row = out.row(0, named=True)
    assert (row["symbol"], row["date"], row["provider"]) == ("AAPL", date(2026, 4, 30), "fmp")
    assert row["dcf"] == pytest.approx(155.92)
    assert row["price"] == pytest.approx(270.17)  # "Stock Price", a key with a space
    seen = replay.requests_to(DCF)[0]
    assert seen.params == {"symbol": "AAPL", "apikey": KEY}


def test_dcf_asks_fmp_under_its_own_spelling(replay, fmp_dir, fmp):
    replay.add_file(DCF, fmp_dir / "doc_sample_stable_discounted_cash_flow_AAPL.json")
    inst = {"provider_symbols": json.dumps({"fmp": "AAPL"})}
    out = fmp.fetch(FetchRequest.valuation("AAPL.US", instrument=inst))
    assert out["symbol"].to_list() == ["AAPL.US"]
    assert replay.requests_to(DCF)[0].params["symbol"] == "AAPL"


@pytest.mark.parametrize(
    "fixture, error",
    [
        ("error_401_invalid_api_key.envelope.json", AuthError),
        ("error_403_legacy_endpoint_api_v3.envelope.json", AuthError),
        ("error_429_limit_reach.envelope.json", RateLimitedError),
    ],
)
def test_error_envelopes_by_status(replay, fmp_dir, fmp, fixture, error):
    replay.add_file(DCF, fmp_dir / fixture)
    with pytest.raises(error) as exc:
        fmp.fetch(FetchRequest.valuation("AAPL"))
    assert KEY not in str(exc.value)
    if error is AuthError:  # the provider stops: no further request is sent
        n = len(replay.seen)
        with pytest.raises(AuthError):
            fmp.fetch(FetchRequest.valuation("MSFT"))
        assert len(replay.seen) == n


def test_limit_reach_with_http_200_is_not_data(replay, fmp_dir, fmp):
    # FMP sometimes sends the quota message with HTTP 200: it must never parse as a list
    replay.add_file(DCF, fmp_dir / "error_429_limit_reach.envelope.json", status=200)
    with pytest.raises(RateLimitedError, match="quota exhausted"):
        fmp.fetch(FetchRequest.valuation("AAPL"))
    body = json.loads((fmp_dir / "error_403_legacy_endpoint_api_v3.envelope.json").read_text())
    with pytest.raises(AuthError, match="Legacy Endpoint"):
        parse_dcf(body["response"]["bodyJson"], symbol="AAPL")


def test_no_key_stops_fmp_without_a_request(replay):
    p = FmpProvider(settings_for("fmp", replay))
    with pytest.raises(AuthError, match="MARKETLAKE_FMP_API_KEY"):
        p.fetch(FetchRequest.valuation("AAPL"))
    assert replay.seen == []
    p.close()


def test_etf_list(replay, fmp):
    replay.add_file("/stable/etf-list", OWN / "written_from_docs_stable_etf_list.json")
    out = fmp.fetch(FetchRequest.instruments())
    assert out.schema == frame_schema("instruments")
    assert out["symbol"].to_list() == ["SPY", "IWM", "GULF", "IWM"]  # duplicates reported later
    assert out["is_etf"].all() and set(out["asset_type"]) == {"etf"}
    assert parse_etf_list([]).is_empty()
