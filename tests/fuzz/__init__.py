"""Property-based fuzzing of the translation core (hypothesis).

How many examples each test runs comes from `NIMBRIDGE_FUZZ_PROFILE`:
`ci` (the default, 200 examples per test, the whole package in well under a
minute) or `nightly` (10,000 examples per test). The profiles apply only to the
tests here, through the `FUZZ` decorator, so unit tests keep their own
settings when both run in one session. No example database is written: a
failure prints the `@reproduce_failure` blob and the shrunk example instead.
"""

import os

from hypothesis import HealthCheck, settings

PROFILE_ENV = "NIMBRIDGE_FUZZ_PROFILE"

for name, examples in (("ci", 200), ("nightly", 10_000)):
    settings.register_profile(
        f"nimbridge-fuzz-{name}",
        max_examples=examples,
        database=None,  # never write .hypothesis/ into the repository
        deadline=None,  # a shared 2-core machine: timing says nothing here
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )

PROFILE = os.environ.get(PROFILE_ENV, "ci")
FUZZ = settings.get_profile(f"nimbridge-fuzz-{PROFILE}")  # an unknown name fails loudly
