"""Every code sample in README.md and docs/**/*.md runs as written.

How the samples are found and run (new samples are picked up without touching this file):

- ```python blocks: a page's blocks run in order in one fresh interpreter (tests/doc_sample_runner.py),
  sharing one namespace, as a reader going down the page would; cwd and HOME are a temp directory.
  A traceback names the .md file and line. A callback that raised on lmgate's threads, or any
  traceback on stderr, fails the page. A ``>>>`` transcript is refused: write a runnable sample.
- The samples' environment points every provider at a FakeProvider (OPENAI_BASE_URL,
  ANTHROPIC_BASE_URL, AZURE_API_BASE, … with dummy keys) and every log endpoint at a LogReceiver
  (GENERIC_LOGGER_ENDPOINT and the presets' URL variables). A variable a sample names
  (``${NAME}``, ``os.environ/NAME``, ``os.environ["NAME"]``, ``getenv("NAME")``, "needs NAME") is
  set too: to the receiver's URL when NAME ends in _URL or _ENDPOINT, else to a dummy value (a
  master key a sample names included: the proxy the test starts has none, so any key passes).
  Connections beyond loopback raise.
- A page whose samples call a proxy at ``localhost:4000`` (or 127.0.0.1 / 0.0.0.0) gets a real
  ``lmgate serve --config examples/config.yaml`` (mock models, no key) on a free port; the test
  rewrites ``:4000`` in those URLs to that port. That is the only change made to a sample's text.
- ```yaml blocks whose top-level keys are all proxy config sections load with
  ``lmgate.proxy.config.load_config`` (validated; callbacks they name are not imported).
- ```bash / ```sh lines: every ``make TARGET`` names a Makefile target; every ``lmgate serve``
  command (``make X`` is expanded with ``make -n``) starts and answers /health/liveliness and
  /v1/models. The test forces ``--host 127.0.0.1`` and a free ``--port``; a ``--config`` that is not
  a file of this repository (the reader's own ``config.yaml``) is given examples/config.yaml's content.
  Any other ``lmgate ...`` command (``lmgate demo`` behind ``make demo``) runs and exits 0.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fakes import FakeProvider, LogReceiver

from lmgate.proxy.config import TOP_LEVEL_KEYS, load_config

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
EXAMPLE_CONFIG = ROOT / "examples" / "config.yaml"
PAGE_TIMEOUT_S = 60
PYTHON_LANGS = ("python", "py", "python3")
READY_ATTEMPTS = 400  # × up to 50 ms: a bounded wait for `lmgate serve` to listen
PROXY_URL = re.compile(r"(?P<host>localhost|127\.0\.0\.1|0\.0\.0\.0):4000\b")
PROXY_SECTIONS = frozenset(TOP_LEVEL_KEYS)
# variables a sample names: ${NAME}, os.environ/NAME, os.environ["NAME"], os.environ.get("NAME"), getenv("NAME"),
# and prose in a comment such as "# needs SUMOLOGIC_WEBHOOK_URL"
ENV_REFERENCE = re.compile(
    r"\$\{(?P<a>[A-Z_][A-Z0-9_]*)\}|os\.environ/(?P<b>[A-Z_][A-Z0-9_]*)"
    r"""|environ(?:\.get\(|\[)\s*["'](?P<c>[A-Z_][A-Z0-9_]*)["']|getenv\(\s*["'](?P<d>[A-Z_][A-Z0-9_]*)["']"""
    r"|\bneeds (?P<e>[A-Z][A-Z0-9]*_[A-Z0-9_]+)"
)


# ------------------------------------------------------------------------------------------ discovery


@dataclass(frozen=True)
class Block:
    path: Path  # the .md file
    line: int  # line of the block's first code line (1-based)
    lang: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^\s`]*)")


def blocks_of(path: Path) -> list[Block]:
    """The fenced code blocks of one markdown file, dedented (fences inside list items are indented)."""
    out: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, lang = opening["indent"], opening["fence"], opening["info"].lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            stripped = lines[j].strip()
            if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
                break
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        out.append(Block(path, i + 2, lang, "\n".join(body) + "\n"))
        i = j + 1
    return out


def doc_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def all_blocks(*langs: str) -> list[Block]:
    return [b for page in doc_pages() for b in blocks_of(page) if b.lang in langs]


PYTHON_PAGES = sorted({b.path for b in all_blocks(*PYTHON_LANGS)})


def python_blocks(page: Path) -> list[Block]:
    return [b for b in blocks_of(page) if b.lang in PYTHON_LANGS]


# ------------------------------------------------------------------------------------------ environment


def env_references(text: str) -> set[str]:
    return {next(v for v in m.groupdict().values() if v) for m in ENV_REFERENCE.finditer(text)}


def preset_variables() -> set[str]:
    """Environment variables the shipped generic_api presets read (sumologic, rubrik, …)."""
    presets = json.loads((ROOT / "src/lmgate/loggers/generic_api_compatible_callbacks.json").read_text())
    return {name for preset in presets.values() for name in preset.get("environment_variables", [])}


def sample_env(fake: FakeProvider, receiver: LogReceiver, home: Path, texts: list[str]) -> dict[str, str]:
    """What a sample's process sees: providers at the fake, log endpoints at the receiver, no master key."""
    keep = ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    # this checkout's lmgate and tests/fakes, whatever the cwd (a relative PYTHONPATH=src would be lost)
    inherited = [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([str(ROOT / "src"), str(TESTS), *inherited]))
    env.update(
        HOME=str(home),
        LMGATE_CACHE_DIR=str(home / "lmgate-cache"),
        XDG_CACHE_HOME=str(home / ".cache"),
        OPENAI_API_KEY="sk-doc-sample-openai",
        OPENAI_BASE_URL=f"{fake.base_url}/v1",
        ANTHROPIC_API_KEY="sk-ant-doc-sample",
        ANTHROPIC_BASE_URL=fake.base_url,
        AZURE_API_KEY="doc-sample-azure",
        AZURE_API_BASE=fake.base_url,
        AZURE_API_VERSION="2024-10-21",
        HOSTED_VLLM_API_BASE=f"{fake.base_url}/v1",
        LM_STUDIO_API_BASE=f"{fake.base_url}/v1",
        GENERIC_LOGGER_ENDPOINT=receiver.url,
    )
    for name in sorted(preset_variables() | {n for t in texts for n in env_references(t)}):
        if name in env:
            continue
        env[name] = receiver.url if name.endswith(("_URL", "_ENDPOINT")) else f"doc-sample-{name.lower()}"
    return env


# ------------------------------------------------------------------------------------------ a served proxy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """``python -m lmgate serve ARGS`` on loopback, started from a command line the docs show."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.argv = [sys.executable, "-m", "lmgate", "serve", *local_args(args, self.port)]
        self.proc = subprocess.Popen(self.argv, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        """Poll /health/liveliness a bounded number of times; a server that exits instead fails at once."""
        for _ in range(READY_ATTEMPTS):
            try:
                if httpx.get(f"{self.url}/health/liveliness", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            try:
                self.proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
            raise AssertionError(
                f"{shlex.join(self.argv)} exited with {self.proc.returncode}:\n{self.output}"
            )
        raise AssertionError(f"{shlex.join(self.argv)} did not become ready:\n{self.output}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._log.close()
        return code


def local_args(args: list[str], port: int) -> list[str]:
    """``args`` with ``--host 127.0.0.1`` and ``--port port`` (replacing the doc's values or added)."""
    out: list[str] = []
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in ("--host", "--port"):
            skip = "=" not in arg and i + 1 < len(args)
            continue
        out.append(arg)
    return [*out, "--host", "127.0.0.1", "--port", str(port)]


@pytest.fixture(scope="module")
def fakes_for_samples() -> Iterator[tuple[FakeProvider, LogReceiver]]:
    with FakeProvider() as fake, LogReceiver() as receiver:
        yield fake, receiver


@pytest.fixture(scope="module")
def example_proxy(
    fakes_for_samples: tuple[FakeProvider, LogReceiver], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    """``lmgate serve --config examples/config.yaml``: what samples calling localhost:4000 talk to."""
    tmp = tmp_path_factory.mktemp("example-proxy")
    env = sample_env(*fakes_for_samples, tmp, [])
    served = ServeProcess(["--config", str(EXAMPLE_CONFIG)], ROOT, env, tmp / "serve.log")
    try:
        served.wait_ready()
        yield served
    finally:
        served.stop()


# ------------------------------------------------------------------------------------------ python samples


def test_samples_are_found() -> None:
    """Discovery works: the README's samples and a docs/ page's samples are among those run."""
    assert ROOT / "README.md" in PYTHON_PAGES
    assert any(p.parent.name == "docs" for p in PYTHON_PAGES)


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_samples_run(
    page: Path,
    fakes_for_samples: tuple[FakeProvider, LogReceiver],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """Every ```python block of the page runs as written, in order, against the fake servers (and a proxy)."""
    blocks = python_blocks(page)
    for block in blocks:
        assert not block.code.lstrip().startswith(">>>"), (
            f"{block.where}: a >>> transcript cannot be run; write the statements, with the output in a comment"
        )
    codes = [b.code for b in blocks]
    if any(PROXY_URL.search(code) for code in codes):
        proxy: ServeProcess = request.getfixturevalue("example_proxy")
        codes = [PROXY_URL.sub(f"127.0.0.1:{proxy.port}", code) for code in codes]
    blocks_file = tmp_path / "blocks.json"
    blocks_file.write_text(
        json.dumps(
            [
                {"path": str(b.path), "line": b.line, "code": code}
                for b, code in zip(blocks, codes, strict=True)
            ]
        )
    )
    home = tmp_path / "home"
    home.mkdir()
    env = sample_env(*fakes_for_samples, home, codes)
    result = subprocess.run(
        [sys.executable, str(TESTS / "doc_sample_runner.py"), str(blocks_file)],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=PAGE_TIMEOUT_S,
    )
    report = f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert result.returncode == 0, report
    assert "Traceback (most recent call last)" not in result.stderr, report


# ------------------------------------------------------------------------------------------ yaml configs


def top_level_keys(code: str) -> set[str]:
    """The unindented ``key:`` lines of a YAML text (read without parsing, so broken YAML is still checked)."""
    return set(re.findall(r"^([A-Za-z_][\w-]*)\s*:", code, re.M))


PROXY_YAML = [
    b for b in all_blocks("yaml", "yml") if (keys := top_level_keys(b.code)) and keys <= PROXY_SECTIONS
]


def test_proxy_yaml_samples_found() -> None:
    """docs/proxy.md's configuration reference is among the YAML samples checked."""
    assert any(b.path.name == "proxy.md" and "model_list" in b.code for b in PROXY_YAML)


@pytest.mark.parametrize("block", PROXY_YAML, ids=lambda b: b.where)
def test_proxy_yaml_samples_load(
    block: Block, fakes_for_samples: tuple[FakeProvider, LogReceiver], tmp_path: Path
) -> None:
    """A ```yaml block made of proxy config sections is a valid config (keys, types, env references)."""
    path = tmp_path / "config.yaml"
    path.write_text(block.code)
    env = sample_env(*fakes_for_samples, tmp_path, [block.code])
    try:
        load_config(path, environ=env)
    except ValueError as error:
        pytest.fail(f"{block.where}: the sample config does not load: {error}", pytrace=False)


# ------------------------------------------------------------------------------------------ shell commands


def shell_commands() -> list[tuple[str, list[str]]]:
    """(page:line, words) for each command line of the ```bash / ```sh blocks (comments dropped)."""
    out = []
    for block in all_blocks("bash", "sh", "shell", "console"):
        lines = block.code.splitlines()
        i = 0
        while i < len(lines):
            start, line = i, lines[i]
            while line.rstrip().endswith("\\") and i + 1 < len(lines):  # a continued line
                i += 1
                line = line.rstrip()[:-1] + " " + lines[i]
            i += 1
            words = shlex.split(line.strip().removeprefix("$ "), comments=True)
            if words:
                out.append((f"{block.path.relative_to(ROOT)}:{block.line + start}", words))
    return out


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return {m for names in re.findall(r"^([A-Za-z0-9_. -]+):(?!=)", text, re.M) for m in names.split()}


def lmgate_args(words: list[str]) -> list[str] | None:
    """The arguments after ``lmgate`` (``.venv/bin/lmgate``, ``python -m lmgate``), up to a shell operator."""
    for i, word in enumerate(words):
        if word == "lmgate" or word.endswith("/lmgate"):
            rest = words[i + 1 :]
            ends = [j for j, w in enumerate(rest) if w in ("&&", "||", "|", ";", "&")]
            return rest[: ends[0]] if ends else rest
    return None


def make_recipe(target: str) -> list[str]:
    """The commands ``make TARGET`` runs, without its prerequisites (the venv is not built here)."""
    if shutil.which("make") is None:  # `make test` needs it; without it only direct `lmgate serve` lines run
        return []
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", "-C", str(ROOT), target, "STAMP="],
        capture_output=True,
        text=True,
        timeout=30,
    )
    # an unknown target is reported by test_make_targets_in_docs_exist, not as a collection error
    return [line for line in result.stdout.splitlines() if line.strip()] if result.returncode == 0 else []


def test_make_targets_in_docs_exist() -> None:
    """Every `make X` a doc tells the reader to run is a target of the Makefile."""
    targets = make_targets()
    named = [(where, w[1]) for where, w in shell_commands() if len(w) > 1 and w[0] == "make"]
    assert named, "no `make` command found in the docs (the README opens with `make demo`)"
    missing = [f"{where}: make {target}" for where, target in named if target not in targets]
    assert not missing, missing


def test_readme_opens_with_demo_and_test() -> None:
    """A newcomer's first two commands: `make demo`, then `make test`."""
    first = next(b for b in blocks_of(ROOT / "README.md") if b.lang in ("bash", "sh"))
    commands = [shlex.split(line, comments=True)[:2] for line in first.code.splitlines() if line.strip()]
    assert commands[:2] == [["make", "demo"], ["make", "test"]]


def lmgate_commands() -> dict[tuple[str, ...], str]:
    """Every distinct ``lmgate`` command line the docs show (``make`` targets expanded): args -> where."""
    seen: dict[tuple[str, ...], str] = {}
    for where, words in shell_commands():
        lines = [words]
        if words[:1] == ["make"] and len(words) > 1:
            lines = [shlex.split(line) for line in make_recipe(words[1]) if re.search(r"\blmgate\b", line)]
        for line in lines:
            args = lmgate_args(line)
            if args:
                seen.setdefault(tuple(args), f"{where}: {shlex.join(words)}")
    return seen


def serve_commands() -> list[tuple[str, list[str]]]:
    """(where, arguments) of every distinct ``lmgate serve`` (``--host``/``--port`` set aside)."""
    seen: dict[tuple[str, ...], str] = {}
    for args, where in lmgate_commands().items():
        if args[0] == "serve":
            seen.setdefault(tuple(local_args(list(args[1:]), 0)[:-4]), where)
    return [(where, list(args)) for args, where in seen.items()]


SERVE_COMMANDS = serve_commands()


def test_serve_commands_found() -> None:
    """The README's way to start the proxy is among the commands checked."""
    assert any(where.startswith("README.md") for where, _ in SERVE_COMMANDS)


@pytest.mark.parametrize(("where", "args"), SERVE_COMMANDS, ids=[w for w, _ in SERVE_COMMANDS])
def test_serve_commands_start(
    where: str, args: list[str], fakes_for_samples: tuple[FakeProvider, LogReceiver], tmp_path: Path
) -> None:
    """`lmgate serve` as the docs write it starts, answers probes and lists its models, and stops cleanly."""
    assert "--config" in args, f"{where}: lmgate serve needs --config"
    config = args[args.index("--config") + 1]
    if (ROOT / config).is_file():
        cwd = ROOT
    else:  # the reader's own config: stand in the shipped example
        cwd = tmp_path / "cwd"
        (cwd / config).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(EXAMPLE_CONFIG, cwd / config)
    if "--data-dir" in args:  # the reader's data directory (/var/lib/lmgate, say): the test's own
        args = list(args)
        args[args.index("--data-dir") + 1] = str(tmp_path / "data")
    served = ServeProcess(args, cwd, sample_env(*fakes_for_samples, tmp_path, []), tmp_path / "serve.log")
    try:
        served.wait_ready()
        models = httpx.get(f"{served.url}/v1/models", timeout=5)
        assert models.status_code == 200, f"{where}: /v1/models: {models.status_code} {models.text}"
        assert models.json()["data"], f"{where}: no models"
    finally:
        code = served.stop()
    assert code == 0, f"{where}: exit {code}\n{served.output}"


OTHER_COMMANDS = [(where, list(args)) for args, where in lmgate_commands().items() if args[0] != "serve"]


@pytest.mark.parametrize(("where", "args"), OTHER_COMMANDS, ids=[w for w, _ in OTHER_COMMANDS])
def test_other_lmgate_commands_run(
    where: str, args: list[str], fakes_for_samples: tuple[FakeProvider, LogReceiver], tmp_path: Path
) -> None:
    """Every other `lmgate ...` the docs show (`lmgate demo` behind `make demo`, …) exits 0."""
    result = subprocess.run(
        [sys.executable, "-m", "lmgate", *args],
        cwd=tmp_path,
        env=sample_env(*fakes_for_samples, tmp_path, []),
        capture_output=True,
        text=True,
        timeout=PAGE_TIMEOUT_S,
    )
    assert result.returncode == 0, f"{where}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
