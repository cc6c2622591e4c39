"""Progress output in logs: plain lines every few percent, not carriage returns."""

from __future__ import annotations

import io

from lrlivae.progress import LineProgress, progress


def test_line_progress_prints_a_line_every_few_percent_and_the_end():
    out = io.StringIO()
    bar = LineProgress(total=200, desc="train", unit="it", every_percent=10, stream=out)
    for _ in range(200):
        bar.update(1)
    bar.set_postfix({"loss": "0.5"})
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 10  # 10 %, 20 %, ..., 100 %; close adds nothing new
    assert lines[0].startswith("train:  10% 20/200") and lines[-1].startswith("train: 100% 200/200")


def test_line_progress_iterates_resumes_and_reports_an_unfinished_count():
    out = io.StringIO()
    seen = list(LineProgress(range(7), desc="a", every_percent=50, stream=out))
    assert seen == list(range(7))
    assert out.getvalue().splitlines()[-1].startswith("a: 100% 7/7")
    out = io.StringIO()
    bar = LineProgress(total=100, initial=40, desc="b", every_percent=25, stream=out)
    bar.update(5)  # 45: below the next mark (50)
    assert out.getvalue() == ""
    bar.close()  # stopped early: the count it reached is still reported
    assert out.getvalue().startswith("b:  45% 45/100")


def test_progress_uses_lines_when_stderr_is_not_a_terminal(capsys):
    bar = progress(total=4, desc="x")  # pytest's captured stderr is not a terminal
    assert isinstance(bar, LineProgress)
    bar.update(4)
    bar.close()
    assert "x: 100% 4/4" in capsys.readouterr().err
    assert not isinstance(progress(total=4, disable=True), LineProgress)
