# The agent's proof (issue 2): benchmark targets and the optional independent load clients.
UPGRADES ?= 10

.PHONY: bench-hotupgrade bench-hotupgrade-independent load-tools

## N hot upgrades under load (UPGRADES=10); prints one JSON object. Needs root (network namespaces).
bench-hotupgrade: venv
	$(PY) -m bench.hotupgrade --upgrades $(UPGRADES)

## The same, with Debian's wrk and h2load driving load beside our own generator.
bench-hotupgrade-independent: venv load-tools
	$(PY) -m bench.hotupgrade --upgrades $(UPGRADES) --independent-clients

## wrk (HTTP/1.1) and h2load (HTTP/2, package nghttp2-client) from Debian, installed only if missing.
load-tools:
	@command -v wrk >/dev/null && command -v h2load >/dev/null || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nghttp2-client; }
