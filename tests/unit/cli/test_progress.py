"""lmrec.cli.progress: log lines with counts and time left outside a terminal, a bar inside one."""

import io
import re

import numpy as np

from lmrec.cli import progress as P
from lmrec.cli.progress import Reporter, format_duration, format_rate, quiet, track


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_log_lines_every_ten_seconds_with_counts_rate_and_eta():
    out, clock = io.StringIO(), Clock()
    with Reporter("encode items", total=25000, mode="log", stream=out, clock=clock) as rep:
        for _ in range(25):
            clock.t += 4.0  # 1000 texts every 4 s: 250/s
            rep.advance(1000)
    lines = out.getvalue().splitlines()
    # one line per ~10 s of a 100 s job, plus the final line
    assert 8 <= len(lines) <= 11
    assert lines[0] == "encode items: 3000/25000 (12%), 250/s, ETA 1m28s"
    for line in lines[:-1]:
        assert re.fullmatch(r"encode items: \d+/25000 \(\d+%\), 250/s, ETA \d+(m\d\ds|s)", line), line
    assert lines[-1] == "encode items: 25000/25000 done in 1m40s (250/s)"


def test_short_job_writes_nothing_and_a_stalled_one_still_reports():
    out, clock = io.StringIO(), Clock()
    with Reporter("quick", total=10, mode="log", stream=out, clock=clock) as rep:
        clock.t += 1.0
        rep.advance(10)
    assert out.getvalue() == ""
    with Reporter("fit ease", total=1, mode="log", stream=out, clock=clock) as rep:
        clock.t += 12.0
        rep.tick(clock())  # what the ticker thread does during a long step with no count
        clock.t += 3.0
        rep.advance()
    lines = out.getvalue().splitlines()
    assert lines == ["fit ease: 0/1 (0%), 12s elapsed", "fit ease: 1/1 done in 15s (15.0 s each)"]


def test_nested_jobs_log_from_the_innermost_and_quiet_silences():
    out, clock = io.StringIO(), Clock()
    with Reporter("eval", total=2, mode="log", stream=out, clock=clock) as outer:
        with Reporter("encode", total=100, unit="texts", mode="log", stream=out, clock=clock) as inner:
            clock.t += 11
            inner.advance(50)
            outer.tick(clock())
            with quiet():
                silent = Reporter("inner batches", total=5, mode="log", stream=out, clock=clock)
                clock.t += 20
                silent.advance(5)
                silent.close()
        outer.advance()
    text = out.getvalue()
    assert "encode: 50/100 texts (50%)" in text and "inner batches" not in text
    assert not any(line.startswith("eval: 0/2") for line in text.splitlines())
    assert text.splitlines()[-1].startswith("eval: 1/2 done in 31s")


def test_unknown_total_and_stopped_job():
    out, clock = io.StringIO(), Clock()
    try:
        with Reporter("steps", mode="log", stream=out, clock=clock) as rep:
            clock.t += 30
            rep.advance(60)
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    lines = out.getvalue().splitlines()
    assert lines[0] == "steps: 60, 2.0/s, 30s elapsed"
    assert lines[-1] == "steps: 60 stopped after 30s (2.0/s)"


def test_bar_mode_draws_and_cleans_up():
    out = io.StringIO()
    for x in track(range(50), "tuning points", mode="bar", stream=out, delay=0.0, min_seconds=0.0):
        pass
    assert "tuning points" in out.getvalue()
    assert P._shared["progress"] is None and P._shared["users"] == 0 and not P._active


def test_env_off_and_auto(monkeypatch):
    monkeypatch.setenv("LMREC_PROGRESS", "off")
    assert Reporter("x", 1).mode == "off"
    monkeypatch.setenv("LMREC_PROGRESS", "auto")
    assert P.progress_mode(io.StringIO()) == "log"


def test_formatting():
    assert format_duration(404) == "6m44s" and format_duration(8) == "8s" and format_duration(3720) == "1h02m"
    assert format_rate(52.3) == "52/s" and format_rate(2.5) == "2.5/s" and format_rate(0.25) == "4.0 s each"


def test_encoder_batches_report_through_the_helper(monkeypatch, capsys):
    """The text encoders' batch loop logs its counts to stderr when the job is long."""
    from lmrec.text import cache

    monkeypatch.setenv("LMREC_PROGRESS", "log")
    clock = Clock()
    real = P.Reporter

    def fake(*a, **kw):
        return real(*a, clock=clock, **kw)

    monkeypatch.setattr(P, "Reporter", fake)
    seen = []
    for s, e in cache.batches(1000, 100, description="encode items"):
        clock.t += 3.0
        seen.append(e - s)
    assert sum(seen) == 1000
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("encode items: 400/1000 texts (40%), 33/s, ETA")
    assert err[-1] == "encode items: 1000/1000 texts done in 30s (33/s)"


def test_cached_encoder_reports_once(monkeypatch, tmp_path, capsys):
    from lmrec.text.base import FakeEncoder
    from lmrec.text.cache import CachedEncoder, EmbeddingCache

    monkeypatch.setenv("LMREC_PROGRESS", "log")
    clock = Clock()
    real = P.Reporter
    monkeypatch.setattr(P, "Reporter", lambda *a, **kw: real(*a, clock=clock, **kw))
    enc = CachedEncoder(FakeEncoder(dim=4), EmbeddingCache(tmp_path), chunk_size=100)
    inner = enc.encoder.encode_items

    def slow(texts, **kw):
        clock.t += 5.0
        return inner(texts, **kw)

    enc.encoder.encode_items = slow  # type: ignore[method-assign]
    v = enc.encode_items([f"t{i}" for i in range(300)])
    assert v.shape == (300, 4) and np.isfinite(v).all()
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("encode items (fake") and "300/300 texts done in 15s" in err[-1]
