#!/usr/bin/env python3
"""Requests, failures and latency while a Swarm service rolls over (or loses a replica).

Runs a bounded loopback load against the stack's edge proxy: a fixed number of
GET requests from a few concurrent clients, stopped after a time limit, while
one action happens:

    update  `docker service update --image IMAGE SERVICE` (waits until it converged)
    kill    `docker kill` one running task container of SERVICE, then waits until
            the service has its replicas running again
    none    only the load

    python benchmarks/rolling_update.py --url http://127.0.0.1:8080 --path /version --path /slow \\
        --service orangescrum_app --action update --image orangescrum/orangescrum:4.0.1

Prints requests, failures (any answer but 200, or no answer), p50/p99 latency
and the action's duration; --json prints the figures as JSON on stdout (the report
goes to stderr then). A request
is counted as failed, never retried by this client: retries are the edge's job.
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    requests: int = 0
    failures: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    answers: dict[str, int] = field(default_factory=dict)  # e.g. the `app` field of /slow's JSON

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Load:
    """``requests`` GETs of ``url`` + each of ``paths`` in turn from ``clients`` threads, stopped after
    ``limit`` seconds."""

    def __init__(self, url: str, paths: list[str], *, requests: int, clients: int, limit: float,
                 field_name: str = "app"):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.paths, self.total, self.clients, self.limit, self.field = paths, requests, clients, limit, field_name
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._issued = 0
        self._threads: list[threading.Thread] = []
        self._deadline = 0.0

    def _next(self) -> str | None:
        with self._lock:
            if self._issued >= self.total or time.monotonic() >= self._deadline:
                return None
            self._issued += 1
            return self.paths[self._issued % len(self.paths)]

    def _client(self) -> None:
        while (path := self._next()) is not None:
            started = time.monotonic()
            error, answer = None, None
            try:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
                if resp.status != 200:
                    error = f"HTTP {resp.status}"
                else:
                    try:
                        answer = str(json.loads(body).get(self.field))
                    except (ValueError, AttributeError):
                        answer = None
            except (OSError, http.client.HTTPException) as exc:
                error = type(exc).__name__
            took = (time.monotonic() - started) * 1000
            with self._lock:
                r = self.result
                r.requests += 1
                r.latencies_ms.append(took)
                if error:
                    r.failures += 1
                    r.errors[error] = r.errors.get(error, 0) + 1
                elif answer is not None:
                    r.answers[answer] = r.answers.get(answer, 0) + 1

    def start(self) -> None:
        self._deadline = time.monotonic() + self.limit
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)]
        for t in self._threads:
            t.start()

    def join(self) -> LoadResult:
        for t in self._threads:
            t.join()
        return self.result


def docker(*args: str, timeout: float = 600) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"docker {' '.join(args[:3])} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def running_tasks(service: str) -> list[dict]:
    ids = docker("service", "ps", "-q", "--no-trunc", "--filter", "desired-state=running", service).split()
    tasks = json.loads(docker("inspect", "--type", "task", *ids)) if ids else []
    return [t for t in tasks if t["Status"]["State"] == "running"]


def replicas(service: str) -> int:
    (spec,) = json.loads(docker("service", "inspect", service))
    return spec["Spec"]["Mode"]["Replicated"]["Replicas"]


def action_update(service: str, image: str) -> dict:
    docker("service", "update", "--detach=false", "--quiet", "--image", image, service, timeout=900)
    (spec,) = json.loads(docker("service", "inspect", service))
    return {"update_state": (spec.get("UpdateStatus") or {}).get("State")}


def action_kill(service: str, timeout: float = 180) -> dict:
    tasks = running_tasks(service)
    if not tasks:
        raise SystemExit(f"{service} has no running task to kill")
    victim = tasks[0]["Status"]["ContainerStatus"]["ContainerID"]
    docker("kill", victim)
    wanted = replicas(service)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [t for t in running_tasks(service) if t["Status"]["ContainerStatus"]["ContainerID"] != victim]
        if len(running) >= wanted:
            return {"killed": victim[:12], "healed": True}
        time.sleep(0.5)
    return {"killed": victim[:12], "healed": False}


def run(args: argparse.Namespace) -> dict:
    load = Load(args.url, args.path or ["/slow"], requests=args.requests, clients=args.clients, limit=args.time_limit)
    load.start()
    time.sleep(args.warmup)
    started = time.monotonic()
    if args.action == "update":
        outcome = action_update(args.service, args.image)
    elif args.action == "kill":
        outcome = action_kill(args.service)
    else:
        outcome = {}
    action_seconds = time.monotonic() - started
    result = load.join()
    figures = asdict(result)
    del figures["latencies_ms"]
    return {**figures, "action": args.action, "action_seconds": round(action_seconds, 2),
            "p50_ms": round(result.percentile(50), 1), "p99_ms": round(result.percentile(99), 1), **outcome}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the edge proxy, e.g. http://127.0.0.1:8080")
    parser.add_argument("--path", action="append",
                        help="route to load; repeat it to alternate between routes (default /slow: ~200 ms of work)")
    parser.add_argument("--service", help="the Swarm service the action applies to (STACK_app)")
    parser.add_argument("--action", choices=("update", "kill", "none"), default="update")
    parser.add_argument("--image", help="update: the new image")
    parser.add_argument("--requests", type=int, default=3000, help="requests in total (default 3000)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--time-limit", type=float, default=120, help="stop the load after this many seconds")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of load before the action")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.action != "none" and not args.service:
        parser.error("--service is needed for --action update/kill")
    if args.action == "update" and not args.image:
        parser.error("--image is needed for --action update")
    figures = run(args)
    # With --json the figures go to stdout as JSON and the report to stderr.
    out = sys.stderr if args.json else sys.stdout
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    routes = ", ".join(args.path or ["/slow"])
    print(f"action {figures['action']} of {args.service or '-'}: {figures['action_seconds']:.1f} s", file=out)
    print(f"requests {figures['requests']}, failures {figures['failures']} {figures['errors'] or ''}".rstrip(),
          file=out)
    print(f"latency p50 {figures['p50_ms']:.0f} ms, p99 {figures['p99_ms']:.0f} ms ({routes}, "
          f"{args.clients} clients)", file=out)
    print(f"answers {figures['answers']}", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
