"""Executing a chapter twice prints the same results, whatever the thread count.

Run A is nbval's execution in this session, with torch's default thread count here;
run B is one more execution with another thread count (torch, MKL and OpenBLAS: 1
where the default is more, else 2) and another PYTHONHASHSEED, so that a printed digit
that depends on how a reduction is split over threads, or on the iteration order of a
set of strings, shows up as a difference. See chapter_runs.py for how the runs are
made, book.printed_results for what is compared (every printed text, glued value
and displayed table) and book.compare_text for how: the words must be equal and
each number must agree to one unit in its last printed digit, the most that
rounding differences far below the printed precision can change it. Figures are
drawings of values and are not compared byte for byte.
"""

from pathlib import Path

import pytest

import book

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = book.chapters(ROOT)

pytestmark = pytest.mark.book


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.name)
def test_printed_results_do_not_depend_on_the_run_or_thread_count(chapter, chapter_runs):
    a = chapter_runs.reference(chapter)
    b = chapter_runs.second(chapter)
    # The runs really differ in what they are meant to differ in.
    assert a.threads != b.threads, (
        f"both runs used {a.threads} torch threads; does the chapter set its own?"
    )
    assert a.hashseed != b.hashseed
    results_a, ignored = book.printed_results(a.cells)
    results_b, _ = book.printed_results(chapter_runs.cells(b))
    assert results_a, "the chapter shows nothing to compare"
    if ignored:
        print(f"code cells marked as varying, not compared: {ignored}")
    problems = book.compare_results(results_a, results_b)
    assert not problems, (
        f"{chapter.docname}: run A ({a.how}; {a.threads} threads, PYTHONHASHSEED="
        f"{a.hashseed or 'random'}) and run B ({b.threads} threads, PYTHONHASHSEED="
        f"{b.hashseed}) differ in {len(problems)} place(s):\n" + "\n".join(problems)
    )
