"""The plain renderer (no conda): lines for logs, throttled totals, prompts that never hang."""

from __future__ import annotations

import io
import subprocess
import sys
import threading

import pytest

from conda_cache_plus.ui import plain
from conda_cache_plus.ui.plain import (
    PlainProgressBar,
    PlainRenderer,
    PlainSpinner,
    ProgressBatch,
    clean,
    label_of,
    size_of,
)


class FakeClock:
    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def batch_with(clock, interval=5.0):
    lines: list[str] = []
    return ProgressBatch(lines.append, interval=interval, clock=clock), lines


def test_clean_removes_escapes_and_carriage_returns():
    assert clean("\x1b[1mName\x1b[0m  x\r\n") == "Name  x\n"
    assert clean("10%\r50%\r100%") == "10%\n50%\n100%"
    assert clean("\x1b]0;title\x07ok\b") == "ok"


def test_labels_and_sizes_from_condas_descriptions():
    desc = f"{'zlib-1.3.1':<20.20} | " + f"{'87 KB':<9} | "
    assert label_of(desc) == "zlib-1.3.1 (87 KB)"
    assert size_of(desc) == 87 * 1024
    assert label_of("fetch demo") == "fetch demo"
    assert size_of("fetch demo") is None
    assert label_of("") == "task"


def test_batch_throttles_aggregate_lines():
    clock = FakeClock()
    batch, lines = batch_with(clock)
    bars = [object(), object()]
    for bar in bars:
        batch.add(bar, 1000)
    batch.update(bars[0], 0.1)  # starts the clock; no line yet
    for step in range(1, 40):  # 40 updates within 4 s: still nothing
        clock.now += 0.1
        batch.update(bars[step % 2], min(step / 40, 1))
    assert lines == []
    clock.now = 105.0
    batch.update(bars[0], 0.5)
    assert len(lines) == 1
    clock.now = 106.0
    batch.update(bars[0], 0.6)  # 1 s after the last line: throttled
    assert len(lines) == 1
    clock.now = 110.5
    batch.update(bars[1], 0.9)
    assert len(lines) == 2
    assert lines[1].startswith("progress: 0 of 2 done, ")


def test_aggregate_line_counts_bytes_rate_and_eta():
    clock = FakeClock(0.0)
    batch, lines = batch_with(clock, interval=5)
    a, b, c = object(), object(), object()
    batch.add(a, 4 * 1024 * 1024)
    batch.add(b, 4 * 1024 * 1024)
    batch.add(c, 2 * 1024 * 1024)
    batch.update(a, 0.0)
    clock.now = 10.0
    batch.close(c)  # closed without finishing (Ctrl-C, a failure): not done
    batch.mark_done(a)
    batch.update(a, 1.0)
    # 4 MiB in 10 s; 6 MiB left of 10 MiB known
    assert lines == ["progress: 1 of 3 done, 4.0 MiB of 10.0 MiB, 409.6 KiB/s, ETA 15s"]


def test_aggregate_without_sizes_uses_fractions():
    clock = FakeClock(0.0)
    batch, lines = batch_with(clock, interval=1)
    a, b = object(), object()
    batch.add(a, None)
    batch.add(b, None)
    batch.update(a, 0.0)
    clock.now = 30.0
    batch.mark_done(a)
    batch.update(a, 1.0)  # half of all work in 30 s: 30 s to go
    assert lines == ["progress: 1 of 2 done, 50%, ETA 30s"]


def test_no_aggregate_line_once_everything_closed():
    clock = FakeClock(0.0)
    batch, lines = batch_with(clock, interval=1)
    bar = object()
    batch.add(bar, 10)
    batch.update(bar, 0.5)
    batch.close(bar)
    clock.now = 50
    batch.update(bar, 1.0)
    assert lines == []


def test_bar_lines_start_done_and_stopped():
    out = io.StringIO()
    clock = FakeClock(0.0)
    batch, _ = batch_with(clock, interval=1000)
    bar = PlainProgressBar("pkg-1.0 | 2 KB | ", stream=out, context_manager=batch, clock=clock)
    assert out.getvalue() == ""  # created is not started: conda creates every bar up front
    bar.update_to(0.25)
    clock.now = 1.5
    bar.finish()
    bar.close()
    bar.close()  # idempotent
    other = PlainProgressBar("other", stream=out, context_manager=batch, clock=clock)
    other.update_to(0.5)
    other.close()
    never = PlainProgressBar("never", stream=out, context_manager=batch, clock=clock)
    never.close()
    assert out.getvalue().splitlines() == [
        "pkg-1.0 (2 KB): started",
        "pkg-1.0 (2 KB): done in 1.5s",
        "other: started",
        "other: stopped at 50% after 0.0s",
        "never: not completed",
    ]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_context_manager_batch_summary_and_lead_newline():
    out = io.StringIO()
    out.write("Downloading and Extracting Packages: ...working...")
    with PlainRenderer.progress_bar_context_manager(stream=out) as batch:
        batch.lead_newline = True
        r = PlainRenderer(stream=out)
        bars = [r.progress_bar(f"p{i} | 1 KB | ", context_manager=batch) for i in range(2)]
        for bar in bars:
            bar.update_to(1)
            bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "Downloading and Extracting Packages: ...working..."
    assert lines[1] == "p0 (1 KB): started"
    assert lines[-1].startswith("progress: 2 of 2 done, 2.0 KiB in ")


def test_default_batch_summarises_bursts_of_bars(capsys):
    out = io.StringIO()
    bars = [PlainProgressBar(f"b{i}", stream=out) for i in range(3)]
    assert len({id(b.batch) for b in bars}) == 1  # a burst shares one batch
    for bar in bars:
        bar.update_to(1)
        bar.close()
    assert out.getvalue().splitlines()[-1].startswith("progress: 3 of 3 done in ")
    single = PlainProgressBar("alone", stream=out)
    assert single.batch is not bars[0].batch  # everything had finished: a new batch
    single.finish()
    single.close()
    assert out.getvalue().splitlines()[-1].startswith("alone: done in ")  # no summary for one


def test_bars_from_many_threads_write_whole_lines():
    out = io.StringIO()
    with PlainRenderer.progress_bar_context_manager(stream=out, interval=0) as batch:

        def work(i):
            bar = PlainProgressBar(f"pkg{i} | 1 KB | ", stream=out, context_manager=batch)
            for k in range(50):
                bar.update_to(k / 50)
            bar.update_to(1)
            bar.close()

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    lines = out.getvalue().splitlines()
    assert sum(1 for line in lines if line.endswith(": started")) == 8
    assert sum(1 for line in lines if ": done in " in line) == 8
    for line in lines:
        assert line.startswith(("pkg", "progress: ")), line
    assert lines[-1].startswith("progress: 8 of 8 done, 8.0 KiB in ")


def test_spinner_lines():
    out = io.StringIO()
    with PlainSpinner("Solving environment", stream=out):
        pass
    with pytest.raises(RuntimeError), PlainSpinner("Linking", "failed\n", stream=out):
        raise RuntimeError
    assert out.getvalue().splitlines() == [
        "Solving environment: started",
        "Solving environment: done",
        "Linking: started",
        "Linking: failed",
    ]


def test_detail_view_aligns_and_reindents():
    text = PlainRenderer().detail_view(
        {"conda version": "26.7", "channels": "a\n" + " " * 26 + "b", "none": None}
    )
    assert text.splitlines() == [
        "conda version : 26.7",
        "channels      : a",
        "                b",
        "none          : -",
    ]


def test_envs_list_plain_table():
    text = PlainRenderer().envs_list(
        {
            "/opt/conda": {"name": "base", "active": True, "frozen": False},
            "/opt/conda/envs/dev": {"name": "dev", "active": False, "frozen": True},
        }
    )
    assert text.splitlines() == [
        "conda environments:",
        "Name  Flags   Path",
        "base  active  /opt/conda",
        "dev   frozen  /opt/conda/envs/dev",
    ]
    sized = PlainRenderer().envs_list(["/x/envs/a"], show_size=True).splitlines()
    assert sized[1].split() == ["Name", "Flags", "Size", "Path"]
    assert PlainRenderer().envs_list([]) == "No conda environments found.\n"


@pytest.mark.parametrize(
    ("typed", "default", "expected"),
    [
        ("", "yes", "yes"),  # stdin closed: the default, as conda's classic console
        ("", "no", "no"),
        ("\n", "no", "no"),
        ("\n", "yes", "yes"),
        ("y\n", "no", "yes"),
        ("N\n", "yes", "no"),
    ],
)
def test_prompt_answers(monkeypatch, capsys, typed, default, expected):
    monkeypatch.setattr(sys, "stdin", io.StringIO(typed))
    assert PlainRenderer().prompt("Remove 3 packages", default=default) == expected
    shown = capsys.readouterr().out
    assert f"Remove 3 packages? [yes/no, default: {default}] " in shown
    if not typed:
        assert "stdin is closed" in shown


def test_prompt_asks_again_on_garbage_like_classic(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("maybe\nperhaps\nwhat\nno\n"))
    assert PlainRenderer().prompt("Proceed") == "no"
    assert capsys.readouterr().out.count("Invalid choice") == 3
    monkeypatch.setattr(sys, "stdin", io.StringIO("maybe\n"))  # then EOF: the default
    assert PlainRenderer().prompt("Proceed", default="yes") == "yes"


def test_conda_pipeline_bars_are_done_after_extraction_not_after_download():
    """conda reports 100% when the download ends and again when the extraction has; the done
    line comes with the second, when it happens (not when conda closes every bar at the end)."""
    out = io.StringIO()
    clock = FakeClock(0.0)
    batch, _ = batch_with(clock, interval=1000)
    batch.completions_needed = 2
    ok = PlainProgressBar("ok | 1 KB | ", stream=out, context_manager=batch, clock=clock)
    bad = PlainProgressBar("bad | 1 KB | ", stream=out, context_manager=batch, clock=clock)
    failed = PlainProgressBar("failed | 1 KB | ", stream=out, context_manager=batch, clock=clock)
    ok.update_to(0.5)
    bad.update_to(0.5)
    clock.now = 2.0
    ok.finish()  # downloaded
    bad.finish()  # downloaded, then its extraction fails: no second 100%
    assert "done" not in out.getvalue()
    ok.update_to(1.0)  # extracted
    ok.finish()
    clock.now = 9.0
    for bar in (ok, bad, failed):  # a failed download: created, never updated
        bar.close()
    assert out.getvalue().splitlines() == [
        "ok (1 KB): started",
        "bad (1 KB): started",
        "ok (1 KB): done in 2.0s",
        "bad (1 KB): not completed after 9.0s",
        "failed (1 KB): not completed",
    ]
    assert batch.totals()["done"] == 1


def test_prompt_with_stdin_closed_does_not_hang_in_a_real_process():
    code = (
        "from conda_cache_plus.ui.plain import PlainRenderer; "
        "print('ANSWER', PlainRenderer().prompt('Delete everything', default='no'), "
        "PlainRenderer().prompt('Proceed', default='yes'))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ANSWER no yes" in proc.stdout  # the default each time, as classic


def test_render_strips_terminal_control():
    assert PlainRenderer().render("\x1b[1mName\x1b[0m\r") == "Name\n"
    assert PlainRenderer().render(["a", "b"]) == "a\nb\n"


def test_quiet_renderer_gives_silent_bars_and_spinners(monkeypatch):
    class Quiet(PlainRenderer):
        def quiet(self):
            return True

    out = io.StringIO()
    r = Quiet(stream=out)
    bar = r.progress_bar("x")
    bar.update_to(1)
    bar.close()
    with r.spinner("y", "failed"):
        pass
    assert out.getvalue() == ""
    assert isinstance(bar, plain.NullProgressBar)
