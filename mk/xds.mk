# The xDS test server (issue 13): a control plane on go-control-plane for the tests, built from the Go
# module proxy into $(SIDECAR_HOTUPGRADE_CACHE) keyed by a hash of localcluster/xdsserver/ (see
# localcluster/xds.py; a warm cache makes this a no-op).
.PHONY: xds-server

## The xDS test server binary (prints its path).
xds-server: venv
	$(PY) -m localcluster.xds

# Build it before the integration tests that start it, not inside the first test's timeout.
integration: xds-server
