"""The shell of the import commands: a progress bar on a terminal only, so logs and pipes get
the summary line alone."""

import io

from core.management.importing import terminal_progress


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_no_progress_bar_when_the_output_is_not_a_terminal():
    progress = terminal_progress(io.StringIO())
    rows = [1, 2, 3]

    assert progress(rows, desc="validating", unit="row") is rows


def test_a_progress_bar_on_a_terminal_passes_every_row_through():
    stream = FakeTerminal()
    progress = terminal_progress(stream)

    assert list(progress([1, 2, 3], desc="validating", unit="row")) == [1, 2, 3]
    assert "validating" in stream.getvalue()
