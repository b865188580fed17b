# Placeholder until the local cluster lands (issue 4); replaced by the e2e owner.
e2e:
	@echo "e2e: no suite yet"
