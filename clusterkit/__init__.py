"""Driving the chart on a Kubernetes cluster, for the e2e suite and the benches (a tool: it imports no tests).

- kube.py: the API client, waits, pods and their conditions.
- release.py: one helm release of the chart (install, upgrade, uninstall, its controller and webhook).
- upgrade.py: one pod's upgrade as the controller records it, and the readiness watch around it.
- images.py: the suite's images by the names the cluster pulls them as, and their pull secret.
- suite.py: the suite's chart values, namespaces, demo Deployment, Service and load.
"""
