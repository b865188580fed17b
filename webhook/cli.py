"""`hotupgrade-webhook`: serve the admission webhook and manage its self-signed certificate.

hotupgrade-webhook serve --bind HOST:PORT --tls-cert FILE --tls-key FILE [--config FILE] [--releases FILE]
hotupgrade-webhook releases --out FILE [--kubeconfig FILE]
hotupgrade-webhook certs --config FILE --out-dir DIR [--once]
hotupgrade-webhook check-config [--config FILE]
"""

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotupgrade-webhook", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve", help="serve /mutate, /validate, /healthz, /readyz, /metrics over TLS"
    )
    serve.add_argument("--bind", required=True, help="HOST:PORT to listen on")
    serve.add_argument(
        "--tls-cert", required=True, type=Path, help="PEM certificate chain (reloaded on change)"
    )
    serve.add_argument("--tls-key", required=True, type=Path, help="PEM private key (reloaded on change)")
    serve.add_argument("--config", type=Path, help="YAML config (reloaded on change); defaults if omitted")
    serve.add_argument(
        "--releases",
        type=Path,
        help="the release cache's snapshot file (`releases --out`): new pods get the image of the "
        "SidecarRelease that selects them; not ready until the file exists",
    )
    serve.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    serve.add_argument("--threads", type=int, default=4, help="threads per worker (default 4)")
    serve.add_argument(
        "--read-timeout",
        type=float,
        default=10.0,
        help="seconds a connection may stall (handshake, headers, body) before it is dropped (default 10)",
    )

    releases = commands.add_parser(
        "releases", help="watch SidecarReleases and namespace labels into a snapshot file for `serve`"
    )
    releases.add_argument("--out", required=True, type=Path, help="the snapshot file (written atomically)")
    releases.add_argument("--kubeconfig", help="kubeconfig file (default: the pod's service account)")
    releases.add_argument(
        "--watch-timeout", type=int, default=300, help="seconds per watch before it is renewed (default 300)"
    )

    certs = commands.add_parser(
        "certs", help="self-signed mode: keep the CA, Secret, caBundle and files fresh"
    )
    certs.add_argument("--config", type=Path, help="YAML config (its certificates section)")
    certs.add_argument("--out-dir", required=True, type=Path, help="where to write tls.crt and tls.key")
    certs.add_argument("--once", action="store_true", help="reconcile once and exit")

    check = commands.add_parser("check-config", help="validate a config file and print the effective config")
    check.add_argument("--config", type=Path)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from webhook.config import ConfigError, load_config

    try:
        if args.command == "serve":
            from webhook.server import ServeOptions, serve

            if args.workers < 1 or args.threads < 1:
                print("hotupgrade-webhook: --workers and --threads must be at least 1", file=sys.stderr)
                return 2
            options = ServeOptions(
                bind=args.bind,
                tls_cert=args.tls_cert,
                tls_key=args.tls_key,
                config=args.config,
                workers=args.workers,
                threads=args.threads,
                read_timeout=args.read_timeout,
                releases=args.releases,
            )
            return serve(options)
        if args.command == "releases":
            from webhook.releasecache import run_release_cache

            return run_release_cache(args.out, kubeconfig=args.kubeconfig, watch_timeout=args.watch_timeout)
        if args.command == "certs":
            from webhook.certs_k8s import run_certs

            return run_certs(load_config(args.config), out_dir=args.out_dir, once=args.once)
        config = load_config(args.config)
        print(json.dumps({"hash": config.injection_hash(), "config": asdict(config)}, indent=2))
        return 0
    except ConfigError as exc:
        print(f"hotupgrade-webhook: invalid config: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"hotupgrade-webhook: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
