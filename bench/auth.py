"""What the token check costs a request: the web tier's guard, in process (Flask test client),
on a route that touches no Redis (``/api/v1/status/buildinfo``), with and without an auth file
of ``--tokens`` tokens; and ``AuthPolicy.find`` alone (it compares against every token).

Prints one JSON object per line: ``{"metric", "value", "unit", ...context}``.

    python bench/auth.py           # 20 000 requests per case (best of 5 alternating rounds), 100 tokens
    python bench/auth.py --quick   # 2 000 requests per case
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from filodb.auth import load_auth_file  # noqa: E402
from filodb.config import Config  # noqa: E402
from filodb.redisproc import start_redis  # noqa: E402
from filodb.web import create_app  # noqa: E402


def _auth_file(dirname: str, tokens: int) -> str:
    path = Path(dirname) / "auth.toml"
    path.write_text("".join(f'[[tokens]]\ntoken = "token-{i:04d}-{"x" * 32}"\n'
                            f'datasets = ["*"]\nscopes = ["read"]\n' for i in range(tokens)))  # fmt: skip
    return str(path)


def _round_us(client, n: int, headers: dict[str, str]) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    for _ in range(n):
        client.get("/api/v1/status/buildinfo", headers=headers)
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tokens", type=int, default=100)
    args = ap.parse_args()
    n = 2_000 if args.quick else 20_000
    with tempfile.TemporaryDirectory() as tmp:
        redis = start_redis(Path(tmp) / "redis")
        try:
            path = _auth_file(tmp, args.tokens)
            last = f"token-{args.tokens - 1:04d}-{'x' * 32}"
            cases = {
                "open": (create_app(Config(redis_url=redis.url)), {}),
                "open_with_header": (create_app(Config(redis_url=redis.url)),
                                     {"Authorization": f"Bearer {last}"}),
                "bearer": (create_app(Config(redis_url=redis.url, auth_file=path)),
                           {"Authorization": f"Bearer {last}"}),
            }  # fmt: skip
            clients = {k: (app.test_client(), h) for k, (app, h) in cases.items()}
            for client, headers in clients.values():  # warm up; every case must answer 200
                assert client.get("/api/v1/status/buildinfo", headers=headers).status_code == 200
            best = dict.fromkeys(clients, float("inf"))
            for _ in range(5):  # rounds alternate the cases, so a busy moment hits them all
                for name, (client, headers) in clients.items():
                    best[name] = min(best[name], _round_us(client, n // 5, headers))
            for name, us in best.items():
                print(json.dumps({"metric": f"request_{name}", "value": round(us, 1), "unit": "us",
                                  "tokens": args.tokens if name == "bearer" else 0, "requests": n}))  # fmt: skip
            policy = load_auth_file(path)
            t0 = time.perf_counter()
            for _ in range(n):
                policy.find(last)
            us = (time.perf_counter() - t0) / n * 1e6
            print(json.dumps({"metric": "find", "value": round(us, 2), "unit": "us",
                              "tokens": args.tokens}))  # fmt: skip
        finally:
            redis.stop()


if __name__ == "__main__":
    main()
