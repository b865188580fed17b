# Webhook (issue 3): the admission benchmark needs wrk, an independent C load generator from Debian.
.PHONY: bench-webhook webhook-goldens

bench-webhook: venv
	command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(PY) -m bench.webhook

## Rewrite the injection golden files after an intended change; review the diff before committing.
webhook-goldens: venv
	REFRESH_GOLDEN=1 $(PY) -m pytest -q tests/unit/webhook/test_inject.py
