"""A schema fuzzer (schemathesis, in-process over ASGI) against the app's own OpenAPI: positive and negative cases
generated from the schema of the run; whatever it sends, the server never answers 5xx."""

from __future__ import annotations

from collections import Counter

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from polymodal.serve.app import create_app
from polymodal.serve.config import ServeConfig

FUZZ = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def fuzz(app) -> Counter:
    """Run positive and negative cases for every operation of the app's OpenAPI; the status codes seen."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    cases = st.one_of(schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE))
    seen: Counter = Counter()

    @FUZZ
    @given(case=cases)
    def run(case):
        response = case.call()
        seen[response.status_code] += 1
        assert response.status_code < 500, (case.method, case.path, case.media_type, case.body, response.text)

    run()
    return seen


def test_fuzz_av_digits_app(av_model):
    """Image + audio uploads; /predict and /embed."""
    seen = fuzz(create_app(av_model, ServeConfig(max_wait_ms=0)))
    assert seen[200] > 0 and sum(n for s, n in seen.items() if 400 <= s < 500) > 0, seen


def test_fuzz_json_app(motion_run):
    """JSON (and form) time series and tabular features."""
    import polymodal as pm

    seen = fuzz(create_app(pm.load(motion_run), ServeConfig(max_wait_ms=0)))
    assert seen[200] > 0 and sum(n for s, n in seen.items() if 400 <= s < 500) > 0, seen
