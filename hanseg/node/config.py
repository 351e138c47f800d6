"""The node's settings: one frozen :class:`NodeConfig`, built from the command line."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..precision import PRECISIONS
from .errors import NodeError

#: DICOM AE titles: at most 16 characters, no backslash or control characters (PS3.5 6.2).
AE_TITLE = re.compile(r"^[^\\\x00-\x1f]{1,16}$")
#: Longest wait between two sending attempts, whatever --retry-seconds * 2**attempt says.
MAX_BACKOFF_S = 3600.0
#: shortest action token: a guessable one would open the actions to anyone on the network
MIN_TOKEN_CHARS = 12


@dataclass(frozen=True)
class Peer:
    """A DICOM application entity to send to."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class Allowed:
    """A calling AE title that may send studies; ``host`` None: from any address."""

    ae_title: str
    host: str | None = None


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path | None = None  # given: peers must present a certificate signed by it


#: the environment variable that holds the dashboard's action token (kept off the command line,
#: where every user of the server would see it in the process list)
TOKEN_ENV = "HANSEG_HTTP_TOKEN"


@dataclass(frozen=True)
class HttpSettings:
    """The node's web service (:mod:`hanseg.node.web`)."""

    port: int
    bind: str = "127.0.0.1"  # read-only pages need no token, so they stay on this host by default
    #: user name -> token for the actions (re-queue, force-complete, re-send); empty: actions refused
    tokens: tuple[tuple[str, str], ...] = ()
    show_accession: bool = False  # AccessionNumber beside the UIDs (never a patient name)


@dataclass(frozen=True)
class NodeConfig:
    ae_title: str
    port: int
    storage: Path
    destination: Peer
    allow: tuple[Allowed, ...]
    bind: str = "0.0.0.0"
    stable_seconds: float = 60.0
    model: Path | None = None
    device: str = "auto"
    precision: str = "auto"  # of the network (hanseg.precision)
    names: Path | None = None
    retries: int = 5
    retry_seconds: float = 60.0
    retention_hours: float = 72.0
    tls: TlsFiles | None = None
    max_backoff_s: float = MAX_BACKOFF_S
    #: new associations are refused while free space under --storage is below either floor
    min_free_gb: float = 5.0
    min_free_fraction: float = 0.10
    poll_seconds: float = 0.5  # how often the worker looks for stable studies and due jobs
    http: HttpSettings | None = None  # the dashboard, metrics and health probe; None: no web service
    #: webhook for alerts (quarantine, low disk, destination unreachable); None: none
    notify_url: str | None = None
    #: the destination must have refused every attempt for this long before an alert
    notify_unreachable_s: float = 900.0


def _ae_title(text: str) -> str:
    if not AE_TITLE.match(text.strip()):
        raise NodeError(f"{text!r} is not a DICOM AE title (1 to 16 characters, no backslash)")
    return text.strip()


def parse_peer(text: str) -> Peer:
    """``AET@HOST:PORT``, as the destination is written on the command line."""
    match = re.match(r"^(.+)@(.+):(\d+)$", text)
    if not match:
        raise NodeError(f"--destination {text!r}: write it as AET@HOST:PORT, e.g. TPS@10.0.0.5:104")
    return Peer(_ae_title(match[1]), match[2], int(match[3]))


def parse_allowed(text: str) -> Allowed:
    """``AET`` or ``AET@HOST``: the calling AE title, and optionally the only address it may use."""
    aet, _, host = text.partition("@")
    return Allowed(_ae_title(aet), host or None)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hanseg.node",
        description=("DICOM node: receive CT + MR studies, segment the organs at risk, send RTSTRUCT and SEG on."),
        epilog=(
            "On a running node's queue: python -m hanseg.node jobs --storage DIR; "
            "python -m hanseg.node force-complete STUDY_UID_OR_JOB --storage DIR; "
            "python -m hanseg.node retry JOB --storage DIR; python -m hanseg.node resend JOB --storage DIR (each has its --help)."
        ),
    )
    p.add_argument("--ae-title", required=True, help="this node's AE title (senders must call it)")
    p.add_argument("--port", type=int, required=True, help="port to listen on")
    p.add_argument("--storage", type=Path, required=True, help="folder for received data, jobs, audit")
    p.add_argument("--destination", required=True, help="where results go: AET@HOST:PORT")
    p.add_argument(
        "--allow",
        action="append",
        required=True,
        metavar="AET[@HOST]",
        help="a calling AE title allowed to send (repeat); others are rejected",
    )
    p.add_argument("--bind", default="0.0.0.0", help="address to listen on (default all)")
    p.add_argument(
        "--stable-seconds",
        type=float,
        default=60.0,
        help="a study is complete after this long without a new instance (default 60)",
    )
    p.add_argument("--model", type=Path, default=None, help="model folder (default: the baked model)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="network number format: auto = bfloat16 on a CPU with AMX/AVX512-BF16, float16 on CUDA, else float32",
    )
    p.add_argument("--names", type=Path, default=None, help="structure name-and-colour map (JSON)")
    p.add_argument("--retries", type=int, default=5, help="sending attempts before quarantine (default 5)")
    p.add_argument(
        "--retry-seconds", type=float, default=60.0, help="first wait between attempts, doubled each time (default 60)"
    )
    p.add_argument(
        "--retention-hours",
        type=float,
        default=72.0,
        help="keep a delivered job's images this long; 0: delete at once (default 72)",
    )
    p.add_argument(
        "--min-free-gb",
        type=float,
        default=5.0,
        help="refuse new associations while --storage has less free space than this (default 5)",
    )
    p.add_argument(
        "--min-free-percent",
        type=float,
        default=10.0,
        help="... or less than this percentage of its file system free (default 10)",
    )
    p.add_argument("--tls-cert", type=Path, default=None, help="TLS certificate (PEM), with --tls-key")
    p.add_argument("--tls-key", type=Path, default=None, help="TLS private key (PEM)")
    p.add_argument("--tls-ca", type=Path, default=None, help="CA that peers' certificates must chain to")
    web = p.add_argument_group("dashboard, metrics and alerts (docs/operations.md)")
    web.add_argument(
        "--http-port", type=int, default=None, help="serve the dashboard, /metrics, /healthz and /api/jobs on this port"
    )
    web.add_argument(
        "--http-bind", default="127.0.0.1", help="address of the web service (default 127.0.0.1: this host only)"
    )
    web.add_argument(
        "--http-token",
        default=None,
        help=f"a token that enables the actions (seen in the process list: prefer {TOKEN_ENV} or --http-token-file)",
    )
    web.add_argument(
        "--http-token-file",
        type=Path,
        default=None,
        help=f"file of USER:TOKEN lines (or one bare token) that enable the actions; or set {TOKEN_ENV}",
    )
    web.add_argument(
        "--show-accession", action="store_true", help="show AccessionNumber beside the UIDs on the dashboard"
    )
    web.add_argument("--notify-url", default=None, help="POST a JSON alert here (Slack/Teams-compatible 'text')")
    web.add_argument(
        "--notify-unreachable-minutes",
        type=float,
        default=15.0,
        help="alert when the destination has refused every attempt for this long (default 15)",
    )
    return p


def read_tokens(path: Path | None, environ: Mapping[str, str], given: str | None = None) -> tuple[tuple[str, str], ...]:
    """The action tokens: ``USER:TOKEN`` lines of ``path`` (a line without a colon is a token
    for the user "operator"), the token in ``HANSEG_HTTP_TOKEN`` and ``--http-token`` (user
    "operator" each)."""
    pairs: list[tuple[str, str]] = []
    if path is not None:
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise NodeError(f"--http-token-file {path}: cannot be read ({exc.strerror or exc})") from exc
        for n, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, token = line.rpartition(":")
            user = user.strip() if sep else "operator"
            if len(token.strip()) < MIN_TOKEN_CHARS or not user:
                raise NodeError(
                    f"--http-token-file {path}, line {n}: write USER:TOKEN with a token of at least "
                    f"{MIN_TOKEN_CHARS} characters"
                )
            pairs.append((user, token.strip()))
        if not pairs:
            raise NodeError(f"--http-token-file {path} holds no token")
    for source, token in ((TOKEN_ENV, environ.get(TOKEN_ENV, "")), ("--http-token", given or "")):
        if token.strip():
            if len(token.strip()) < MIN_TOKEN_CHARS:
                raise NodeError(f"{source} must be at least {MIN_TOKEN_CHARS} characters")
            pairs.append(("operator", token.strip()))
    return tuple(pairs)


def _http(args: argparse.Namespace, environ: Mapping[str, str]) -> HttpSettings | None:
    if args.http_port is None:
        if args.http_token_file is not None or args.http_token is not None or args.show_accession:
            raise NodeError("--http-token, --http-token-file and --show-accession need --http-port")
        return None
    if not 0 < args.http_port < 65536:
        raise NodeError(f"--http-port {args.http_port} is not a TCP port")
    if args.http_port == args.port:
        raise NodeError(f"--http-port {args.http_port} is the DICOM --port; give the web service another")
    return HttpSettings(
        args.http_port, args.http_bind, read_tokens(args.http_token_file, environ, args.http_token), args.show_accession
    )


def _tls(args: argparse.Namespace) -> TlsFiles | None:
    if args.tls_cert is None and args.tls_key is None:
        if args.tls_ca is not None:
            raise NodeError("--tls-ca needs --tls-cert and --tls-key")
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise NodeError("TLS needs both --tls-cert and --tls-key")
    return TlsFiles(args.tls_cert, args.tls_key, args.tls_ca)


def config_from_args(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> NodeConfig:
    """Parse and check the command line (a bad value exits with a message, before any I/O
    but reading ``--http-token-file``)."""
    args = build_parser().parse_args(argv)
    environ = os.environ if environ is None else environ
    if args.notify_url is not None and not re.match(r"^https?://[^/\s]+", args.notify_url):
        raise NodeError(f"--notify-url {args.notify_url!r}: give an http:// or https:// URL")
    if args.notify_unreachable_minutes <= 0:
        raise NodeError("--notify-unreachable-minutes must be above 0")
    if not 0 < args.port < 65536:
        raise NodeError(f"--port {args.port} is not a TCP port")
    if args.retries < 1 or args.retry_seconds < 0 or args.stable_seconds < 0 or args.retention_hours < 0:
        raise NodeError(
            "--retries must be at least 1; --retry-seconds, --stable-seconds and --retention-hours cannot be negative"
        )
    if args.min_free_gb < 0 or not 0 <= args.min_free_percent < 100:
        raise NodeError("--min-free-gb cannot be negative; --min-free-percent must be from 0 to below 100")
    return NodeConfig(
        ae_title=_ae_title(args.ae_title),
        port=args.port,
        storage=args.storage,
        destination=parse_peer(args.destination),
        allow=tuple(parse_allowed(a) for a in args.allow),
        bind=args.bind,
        stable_seconds=args.stable_seconds,
        model=args.model,
        device=args.device,
        precision=args.precision,
        names=args.names,
        retries=args.retries,
        retry_seconds=args.retry_seconds,
        retention_hours=args.retention_hours,
        tls=_tls(args),
        min_free_gb=args.min_free_gb,
        min_free_fraction=args.min_free_percent / 100.0,
        http=_http(args, environ),
        notify_url=args.notify_url,
        notify_unreachable_s=args.notify_unreachable_minutes * 60.0,
    )
